package portgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/size"
)

// fieldSpec is what the format says of one YAML field beyond its Go type:
// whether the parser requires it, the hint given when it is missing, and its
// description in the JSON Schema. One table serves both, so the schema cannot
// promise what the parser does not enforce.
type fieldSpec struct {
	required bool
	hint     string  // fix given in the "missing" message
	doc      string  // schema description
	extra    jsonObj // schema keywords beyond the type (enum, pattern, bounds)
}

// specKey names a field in fieldSpecs: Go type name and YAML name.
func specKey(t reflect.Type, yamlName string) string { return t.Name() + "." + yamlName }

// sizePattern matches the text forms ParseSize accepts (size.Pattern).
const sizePattern = size.Pattern

var fieldSpecs = map[string]fieldSpec{
	"Board.name": {required: true, hint: "give the board a name such as stm32f407-disco",
		doc:   "Board name: lower-case letters, digits and '-', starting with a letter. It becomes the directory ports/<name>/, the plugin binary otaport-<name> and, without '-', the Go package name.",
		extra: jsonObj{{"pattern", boardNameRe.String()}, {"maxLength", MaxNameLen}}},
	"Board.vendor": {doc: "Maker of the board or module, as printed on it."},
	"Board.soc":    {doc: "System on chip or microcontroller part number (STM32F407VG, nRF52840)."},
	"Board.source": {required: true, hint: "say where the geometry comes from (datasheet title and section, or SDK file)",
		doc:   "Where the flash geometry and partition table come from: document title with section or table, or SDK file path.",
		extra: jsonObj{{"minLength", 1}}},
	"Board.flash": {required: true, hint: "describe the flash (base, size, sectors or erase_size, write_align, erase_value)",
		doc: "Geometry of the flash that holds the images."},
	"Board.scheme": {doc: "Boot scheme; implied by bootloader unless it is otaport's own. single-bank: the image is downloaded to ota and the bootloader copies it over app. dual-bank: app and ota are slots A and B and the bootloader boots either. swap: the bootloader swaps app and ota, runs the new image on trial and swaps back one that does not confirm itself.",
		extra: jsonObj{{"enum", Schemes()}}},
	"Board.bootloader": {doc: "The second-stage bootloader the board runs, as its SDK builds it: it decides the bytes of every boot request and, unless scheme is given, the scheme (MCUboot overwrite-only: single-bank; swap-move, swap-scratch, swap-offset: swap; direct-xip: dual-bank; esp-idf: dual-bank). Without it, otaport's own bootloader and the scheme given."},
	"Bootloader.name": {required: true, hint: "write name: mcuboot, esp-idf or otaport",
		doc:   "mcuboot, esp-idf, or otaport (otaport's own boot record, for boards no real bootloader fits).",
		extra: jsonObj{{"enum", Bootloaders()}}},
	"Bootloader.mode": {doc: "MCUboot only: the upgrade mode it is built with (MCUBOOT_OVERWRITE_ONLY, MCUBOOT_SWAP_USING_MOVE, MCUBOOT_SWAP_USING_SCRATCH, MCUBOOT_SWAP_USING_OFFSET, MCUBOOT_DIRECT_XIP).",
		extra: jsonObj{{"enum", MCUbootModes()}}},
	"Board.partitions": {required: true, hint: "list bootloader, params, app and ota with offset and size",
		doc:   "Partitions of the flash, offsets relative to flash.base. bootloader, params, app and ota are required, and otadata (8KiB in 4 KiB sectors, no factory partition) on an esp-idf board; other names may be listed to document the rest of the flash.",
		extra: jsonObj{{"minItems", 1}}},
	"Board.image": {required: true, hint: "add image: {signature: ecdsa-p256}",
		doc: "Image policy of the board."},

	"Flash.base": {doc: "Address the flash is mapped at; partition offsets are relative to it. 0 for a block device. Default 0."},
	"Flash.size": {required: true, hint: "write the size of the flash, such as 1MiB",
		doc: "Total size of the flash in bytes."},
	"Flash.sectors": {doc: "Erase sectors in address order, as runs of equal sectors, for non-uniform flash. Exactly one of sectors and erase_size is given.",
		extra: jsonObj{{"minItems", 1}}},
	"Flash.erase_size": {doc: "Erase unit of uniform flash. Exactly one of sectors and erase_size is given; it must divide size."},
	"Flash.write_align": {required: true, hint: "write the smallest programmable unit in bytes (1, 4, 8, 16, 32 or 256)",
		doc: "Smallest programmable unit in bytes: a power of two, no larger than the smallest erase sector."},
	"Flash.erase_value": {required: true, hint: "write erase_value: 0xFF (most NOR flash) or 0x00 (STM32L0/L1)",
		doc:   "What an erased byte reads as: 0xFF on most NOR flash, 0x00 on a few (STM32L0/L1).",
		extra: jsonObj{{"anyOf", []jsonObj{{{"enum", []int{0, 255}}}, {{"type", "string"}, {"pattern", `^(0|255|0[xX]0{1,2}|0[xX][fF]{2})$`}}}}}},

	"SectorRun.count": {required: true, hint: "write how many sectors of this size follow, such as 4",
		doc: "Number of consecutive erase sectors of this size.", extra: jsonObj{{"minimum", 1}}},
	"SectorRun.size": {required: true, hint: "write the size of one sector of this run, such as 16KiB",
		doc: "Size of one erase sector of this run."},

	"Partition.name": {required: true, hint: "name the partition (bootloader, params, app, ota, or your own)",
		doc:   "Partition name: bootloader, params, app and ota are required, otadata on an esp-idf board (ESP-IDF's boot request); others document the rest of the flash.",
		extra: jsonObj{{"pattern", hal.PartitionNamePattern}}},
	"Partition.offset": {required: true, hint: "write its offset from flash.base, on an erase-sector boundary",
		doc: "Offset from flash.base; must be on an erase-sector boundary."},
	"Partition.size": {required: true, hint: "write its size; its end must be on an erase-sector boundary",
		doc: "Size in bytes; the partition must end on an erase-sector boundary. params spans at least two erase sectors; in dual-bank app and ota have the same size and sector layout; in single-bank ota is at least as large as app."},

	"Image.signature": {required: true, hint: "write signature: ed25519, ecdsa-p256, rsa-2048 or rsa-3072",
		doc:   "Signature type images for this board carry (MCUboot TLV).",
		extra: jsonObj{{"enum", Signatures()}}},
	"ModuleEntry.name": {required: true, hint: "give the board's name, as in the module's board.yaml",
		doc:   "Board name of a port in its own Go module, as in the module's board.yaml.",
		extra: jsonObj{{"pattern", boardNameRe.String()}, {"maxLength", MaxNameLen}}},
	"ModuleEntry.module": {required: true, hint: "give the Go module path of the port, such as example.com/acme/otaport-myboard",
		doc: "Go module path of a port that lives outside otaport's repository (made with otagen --module); the module holds the board's description."},

	"Image.boot_attempts": {doc: "Dual-bank only: unconfirmed boots a new image is allowed before the bootloader falls back, 1 to 3. Default 1.",
		extra: jsonObj{{"minimum", 1}, {"maximum", hal.MaxBootAttempts}}},
}

// jsonField and jsonObj build JSON objects whose keys keep the order they are written
// in, so the schema reads in the order of the format.
type jsonField struct {
	k string
	v any
}

type jsonObj []jsonField

// MarshalJSON writes the object with its keys in order.
func (o jsonObj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, fmt.Errorf("schema key %s: %w", e.k, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Schema returns the JSON Schema (draft 2020-12) of the board format,
// generated from the Go types by reflection over their yaml tags, with the
// descriptions, enums and patterns of the format. docs/board.schema.json is
// this output; editors use it to complete and check board files.
func Schema() ([]byte, error) {
	defs := jsonObj{{"size", jsonObj{
		{"description", "A byte count: 4096, 0x1000, or a number with a binary unit (4KiB, 1MiB, 2GiB, 1TiB, 1.5MiB when that is a whole number of bytes). Decimal units (KB, MB) are refused."},
		{"oneOf", []jsonObj{
			{{"type", "integer"}, {"minimum", 0}, {"maximum", int64(MaxSize)}},
			{{"type", "string"}, {"pattern", sizePattern}},
		}},
	}}}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type) error
	walk = func(t reflect.Type) error {
		if seen[t] {
			return nil
		}
		seen[t] = true
		props := jsonObj{}
		var required []string
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			spec, ok := fieldSpecs[specKey(t, name)]
			if !ok || spec.doc == "" {
				return fmt.Errorf("schema: field %s has no description in fieldSpecs", specKey(t, name))
			}
			p := jsonObj{{"description", spec.doc}}
			typ, err := schemaType(f.Type)
			if err != nil {
				return fmt.Errorf("schema: field %s: %w", specKey(t, name), err)
			}
			p = append(p, typ...)
			p = append(p, spec.extra...)
			props = append(props, jsonField{name, p})
			if spec.required {
				required = append(required, name)
			}
			for ft := f.Type; ; ft = ft.Elem() {
				if ft.Kind() == reflect.Struct {
					if err := walk(ft); err != nil {
						return err
					}
					break
				}
				if ft.Kind() != reflect.Slice {
					break
				}
			}
		}
		def := jsonObj{{"type", "object"}, {"properties", props}}
		if len(required) > 0 {
			def = append(def, jsonField{"required", required})
		}
		def = append(def, jsonField{"additionalProperties", false})
		if t == reflect.TypeOf(Board{}) {
			def = append(def, jsonField{"anyOf", []jsonObj{{{"required", []string{"scheme"}}}, {{"required", []string{"bootloader"}}}}})
		}
		if t == reflect.TypeOf(Flash{}) {
			def = append(def, jsonField{"oneOf", []jsonObj{{{"required", []string{"sectors"}}}, {{"required", []string{"erase_size"}}}}})
		}
		defs = append(defs, jsonField{defName(t), def})
		return nil
	}
	if err := walk(reflect.TypeOf(Board{})); err != nil {
		return nil, err
	}
	if err := walk(reflect.TypeOf(ModuleEntry{})); err != nil {
		return nil, err
	}
	defs = append(defs, jsonField{"catalog", jsonObj{
		{"type", "object"},
		{"properties", jsonObj{{"boards", jsonObj{
			{"description", "The boards of the catalog; names must be unique, and unique once '-' is removed. An entry with module: is a port in its own Go module."},
			{"type", "array"}, {"minItems", 1}, {"items", jsonObj{{"oneOf", []jsonObj{{{"$ref", "#/$defs/board"}}, {{"$ref", "#/$defs/moduleEntry"}}}}}},
		}}}},
		{"required", []string{"boards"}},
		{"additionalProperties", false},
	}})
	s := jsonObj{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"title", "otaport board description"},
		{"description", "One board, or a catalog of boards under boards:. The parser (otagen) enforces further rules the schema cannot express: sectors add up to size, partitions on erase-sector boundaries and inside the flash, no overlaps, params of at least two sectors, matching slots. See docs/board-format.md."},
		{"oneOf", []jsonObj{{{"$ref", "#/$defs/board"}}, {{"$ref", "#/$defs/catalog"}}}},
		{"$defs", defs},
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return append(out, '\n'), nil
}

func defName(t reflect.Type) string {
	n := t.Name()
	return strings.ToLower(n[:1]) + n[1:]
}

func schemaType(t reflect.Type) (jsonObj, error) {
	switch {
	case t == sizeType:
		return jsonObj{{"$ref", "#/$defs/size"}}, nil
	case t.Kind() == reflect.String:
		return jsonObj{{"type", "string"}}, nil
	case t.Kind() == reflect.Int:
		return jsonObj{{"type", "integer"}}, nil
	case t.Kind() == reflect.Struct:
		return jsonObj{{"$ref", "#/$defs/" + defName(t)}}, nil
	case t.Kind() == reflect.Slice:
		items, err := schemaType(t.Elem())
		if err != nil {
			return nil, err
		}
		return jsonObj{{"type", "array"}, {"items", items}}, nil
	}
	return nil, fmt.Errorf("no schema for Go type %s", t)
}
