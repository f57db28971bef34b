package fleet

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"

	"github.com/otaport/otaport/fleet/api"
)

// apiDocPath is the OpenAPI document of the HTTP listener.
const apiDocPath = "../docs/api.yaml"

// dashboardPages is the one pattern of the listener docs/api.yaml leaves
// out: the dashboard's HTML pages, for browsers, described in
// docs/dashboard.md. Its API route (the sign-in link) is documented.
const dashboardPages = "/"

// apiDoc is the part of docs/api.yaml the tests compare with the code.
type apiDoc struct {
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Schemas map[string]docSchema `yaml:"schemas"`
	} `yaml:"components"`
}

type docSchema struct {
	Type       string               `yaml:"type"`
	Format     string               `yaml:"format"`
	Ref        string               `yaml:"$ref"`
	Required   []string             `yaml:"required"`
	Properties map[string]docSchema `yaml:"properties"`
	Items      *docSchema           `yaml:"items"`
}

func readAPIDoc(t *testing.T) apiDoc {
	t.Helper()
	b, err := os.ReadFile(apiDocPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc apiDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", apiDocPath, err)
	}
	return doc
}

// documentedRoutes lists the operations of docs/api.yaml as "METHOD /path".
func documentedRoutes(doc apiDoc) []string {
	var out []string
	for path, item := range doc.Paths {
		for key := range item {
			switch key {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				out = append(out, strings.ToUpper(key)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// servedRoutes lists what the listener of a real Server serves, from the
// patterns its mux registered, as "METHOD /path": the API's mount expanded
// into the API's own route table, the dashboard's pages left out. A GET
// pattern also serves HEAD; head reports whether the document may list it.
func servedRoutes(t *testing.T, patterns []string) (routes []string, head map[string]bool) {
	t.Helper()
	head = map[string]bool{}
	sawPages := false
	for _, p := range patterns {
		switch p {
		case api.Prefix + "/":
			for _, r := range api.Routes() {
				routes = append(routes, r.String())
			}
			continue
		case dashboardPages:
			sawPages = true
			continue
		}
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("the listener registers %q for every method: give it a method, or expand it in this test as the API's mount is", p)
			continue
		}
		routes = append(routes, method+" "+path)
		if method == http.MethodGet {
			head[http.MethodHead+" "+path] = true
		}
	}
	if !sawPages {
		t.Errorf("the listener no longer registers the dashboard's pages at %q: update dashboardPages", dashboardPages)
	}
	sort.Strings(routes)
	return routes, head
}

// TestAPIDoc_CoversEveryRoute: docs/api.yaml documents every route the
// listener serves, and no route it does not serve.
func TestAPIDoc_CoversEveryRoute(t *testing.T) {
	// An external broker: New only parses its URL, so no broker runs.
	srv, err := New(Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", BrokerURL: "tcp://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	served, head := servedRoutes(t, srv.patterns)
	documented := documentedRoutes(readAPIDoc(t))
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is served but not in %s: document it", r, apiDocPath)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) && !head[r] {
			t.Errorf("%s is in %s but the server does not serve it: remove it or fix its method and path", r, apiDocPath)
		}
	}
}

// TestAPIDoc_ScopesMatchTheRouteTable: each operation of the API says in
// x-scope the scope the route table gives it, and in x-holder whether only
// the campaigns' lease holder runs it (another replica forwards it), so the
// document a user reads is the table the server checks.
func TestAPIDoc_ScopesMatchTheRouteTable(t *testing.T) {
	doc := readAPIDoc(t)
	for _, r := range api.Routes() {
		op, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]
		if !ok {
			continue // TestAPIDoc_CoversEveryRoute reports it
		}
		var fields struct {
			Scope     string               `yaml:"x-scope"`
			Holder    bool                 `yaml:"x-holder"`
			Responses map[string]yaml.Node `yaml:"responses"`
		}
		if err := op.Decode(&fields); err != nil {
			t.Fatalf("%s: %s: %v", apiDocPath, r, err)
		}
		if fields.Scope != string(r.Scope) {
			t.Errorf("%s: %s has x-scope %q; the route table (fleet/api) gives it %s", apiDocPath, r, fields.Scope, r.Scope)
		}
		if _, has503 := fields.Responses["503"]; fields.Holder != r.Holder || has503 != r.Holder {
			t.Errorf("%s: %s has x-holder %v and a 503 answer %v; the route table (fleet/api) gives it Holder %v", apiDocPath, r, fields.Holder, has503, r.Holder)
		}
	}
}

// TestAPIDoc_SchemasMatchTypes: each schema of docs/api.yaml has exactly
// the JSON fields of the Go type of its name, with matching types; a field
// that is always present (no omitempty) is required in an answer. Every
// type of fleet/api and fleet with JSON fields has a schema.
func TestAPIDoc_SchemasMatchTypes(t *testing.T) {
	types := map[string]reflect.Type{}
	for _, v := range []any{
		api.Device{}, api.AddDevice{}, api.Module{}, api.ModuleSpec{}, api.KeySet{}, api.Image{}, api.Target{}, api.CampaignImage{}, api.Wave{}, api.Campaign{},
		api.Progress{}, api.WaveStatus{}, api.Status{}, api.Bytes{}, api.CreateCampaign{}, api.Error{}, Version{},
		api.CertificateRequest{}, api.Certificate{}, api.Token{}, api.CreateToken{}, api.NewToken{},
	} {
		types[reflect.TypeOf(v).Name()] = reflect.TypeOf(v)
	}
	// Request bodies: a field the server defaults when absent need not be
	// required, so there required only has to be a subset.
	requests := map[string]bool{"AddDevice": true, "CreateCampaign": true, "Target": true, "ModuleSpec": true, "CertificateRequest": true, "CreateToken": true}

	for _, pkg := range []string{"api", "."} {
		for _, name := range jsonTypes(t, pkg) {
			if _, ok := types[name]; !ok {
				t.Errorf("%s in fleet/%s has JSON fields but no schema here: add it to %s and to this test's list", name, pkg, apiDocPath)
			}
		}
	}
	schemas := readAPIDoc(t).Components.Schemas
	for name := range schemas {
		if _, ok := types[name]; !ok {
			t.Errorf("%s: schema %s names no Go type of the API: remove it or add the type to this test", apiDocPath, name)
		}
	}
	for name, typ := range types {
		s, ok := schemas[name]
		if !ok {
			t.Errorf("%s: no schema %s for %s", apiDocPath, name, typ)
			continue
		}
		checkSchema(t, name, s, typ, requests[name])
	}
}

// checkSchema compares the schema of one struct type with its JSON fields.
func checkSchema(t *testing.T, name string, s docSchema, typ reflect.Type, request bool) {
	t.Helper()
	if s.Type != "object" {
		t.Errorf("%s: schema %s has type %q, want object", apiDocPath, name, s.Type)
	}
	var always []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		field, opts, _ := strings.Cut(tag, ",")
		if !f.IsExported() || field == "-" {
			continue
		}
		if field == "" {
			t.Errorf("%s.%s has no json tag: name it as the API publishes it", typ, f.Name)
			continue
		}
		if !strings.Contains(","+opts+",", ",omitempty,") && !strings.Contains(","+opts+",", ",omitzero,") {
			always = append(always, field)
		}
		p, ok := s.Properties[field]
		if !ok {
			t.Errorf("%s: schema %s lacks %s (%s.%s): document it", apiDocPath, name, field, typ, f.Name)
			continue
		}
		if want, got := schemaOf(f.Type), describe(p); want != got {
			t.Errorf("%s: %s.%s is %s, want %s as %s.%s is %s", apiDocPath, name, field, got, want, typ, f.Name, f.Type)
		}
	}
	for field := range s.Properties {
		if !hasJSONField(typ, field) {
			t.Errorf("%s: schema %s has %s, which %s has not: remove it", apiDocPath, name, field, typ)
		}
	}
	sort.Strings(always)
	required := slices.Sorted(slices.Values(s.Required))
	for _, r := range required {
		if !slices.Contains(always, r) {
			t.Errorf("%s: schema %s requires %s, which %s omits when empty", apiDocPath, name, r, typ)
		}
	}
	if !request && !slices.Equal(required, always) {
		t.Errorf("%s: schema %s requires %v; %s always has %v", apiDocPath, name, required, typ, always)
	}
}

func hasJSONField(typ reflect.Type, name string) bool {
	for i := range typ.NumField() {
		if field, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); field == name {
			return true
		}
	}
	return false
}

// schemaOf says in describe's words which schema encoding/json's form of a
// Go type has.
func schemaOf(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "string/date-time"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Slice:
		return "array of " + schemaOf(t.Elem())
	case t.Kind() == reflect.Struct:
		return "$ref " + t.Name()
	}
	return "unsupported Go type " + t.String()
}

// describe says which schema a property has.
func describe(p docSchema) string {
	switch {
	case p.Ref != "":
		return "$ref " + strings.TrimPrefix(p.Ref, "#/components/schemas/")
	case p.Type == "array" && p.Items != nil:
		return "array of " + describe(*p.Items)
	case p.Type == "string" && p.Format == "date-time":
		return "string/date-time"
	}
	return p.Type
}

// jsonTypes lists the exported struct types of fleet/<pkg>'s non-test
// files that have a field with a json tag: the API's types, found without
// a hand list, so a new one cannot be forgotten by this test.
func jsonTypes(t *testing.T, pkg string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(pkg, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("list %s: %v (none found)", pkg, err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || !ts.Name.IsExported() {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, field := range st.Fields.List {
				if field.Tag != nil && strings.Contains(field.Tag.Value, `json:"`) {
					out = append(out, ts.Name.Name)
					break
				}
			}
			return true
		})
	}
	return out
}

// TestAPIDoc_IsValidOpenAPI: the document loads and validates as OpenAPI 3
// (references resolve, parameters match the paths' templates, examples fit
// their schemas).
func TestAPIDoc_IsValidOpenAPI(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(apiDocPath)
	if err != nil {
		t.Fatalf("load %s: %v", apiDocPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", apiDocPath, err)
	}
}
