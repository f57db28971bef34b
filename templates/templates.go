// Package templates holds the text templates otagen fills for what is not Go:
// a port's README and the matching C port for AliOS Things firmware.
//
// It only stores and parses the templates; the data they are filled with is
// computed by portgen, so the templates stay free of arithmetic.
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
	README  = "README.md.tmpl"
	CHeader = "ota_hal_plat.h.tmpl"
	CSource = "ota_port.c.tmpl"
)

// Parse parses every template. The set is fixed at build time, so an error
// here is a bug in a template, reported with its name and line.
func Parse() (*template.Template, error) {
	t, err := template.New("").Option("missingkey=error").ParseFS(files, "*.tmpl")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	return t, nil
}
