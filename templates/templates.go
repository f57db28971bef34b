// Package templates holds the text templates otagen fills: every file of a
// port (the Go code, the README, the board's C header, a module's go.mod)
// and the C port shared by every board.
//
// It only stores and parses the templates; the data they are filled with is
// computed by portgen, so the templates stay free of arithmetic.
//
// Templates rather than a Go code builder (jennifer, which otagen used
// before) for the Go files too: every generated file is the same text for
// every board but for a few values and one list, so a template reads as the
// file it makes, where builder calls described the same fixed function body
// statement by statement and their import grouping had to be repaired in
// the output. portgen runs gofmt over the Go it fills in, so a template that
// makes invalid Go fails at generation, and the golden tests pin the result.
package templates

import (
	"embed"
	"fmt"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// Names of the templates, one per generated file.
const (
	Port     = "port.go.tmpl"      // a port's zz_generated.go
	PortTest = "port_test.go.tmpl" // a port module's conformance test
	Driver   = "driver.go.tmpl"    // a port's driver.go, written once
	Main     = "main.go.tmpl"      // a port's plugin main
	Registry = "registry.go.tmpl"  // ports/all/zz_generated.go
	GoMod    = "go.mod.tmpl"       // a port module's go.mod, written once
	README   = "README.md.tmpl"
	CBoard   = "ota_board.h.tmpl"    // a board's C header
	CHeader  = "ota_hal_plat.h.tmpl" // the C port's header, the same for every board
	CSource  = "ota_port.c.tmpl"     // the C port, the same for every board
)

// Names lists every template.
func Names() []string {
	return []string{Port, PortTest, Driver, Main, Registry, GoMod, README, CBoard, CHeader, CSource}
}

// Parse parses every template with the functions funcs. The set is fixed at
// build time, so an error here is a bug in a template, reported with its
// name and line.
func Parse(funcs template.FuncMap) (*template.Template, error) {
	t, err := template.New("").Funcs(funcs).Option("missingkey=error").ParseFS(files, "*.tmpl")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	return t, nil
}
