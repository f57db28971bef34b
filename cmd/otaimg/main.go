// Command otaimg makes and checks otaport firmware images, which are MCUboot
// images: keygen, sign, verify, info and getpub work as MCUboot's imgtool
// does, and each reads what the other writes.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
