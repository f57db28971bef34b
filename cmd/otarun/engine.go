package main

// engineCommands returns the commands that drive the upgrade engine
// (install, boot, status, confirm, rollback).
func engineCommands() []command { return nil }
