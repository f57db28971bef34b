package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/otaport/otaport/core/hal"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// TestCodeEnum_MatchesHalCodes keeps hal.proto's Code enum and hal.Code in
// step: the wire carries hal.Code's numbers.
func TestCodeEnum_MatchesHalCodes(t *testing.T) {
	want := map[hal.Code]string{
		hal.CodeUnknown:     "CODE_UNKNOWN",
		hal.CodeOutOfBounds: "CODE_OUT_OF_BOUNDS",
		hal.CodeMisaligned:  "CODE_MISALIGNED",
		hal.CodeNotErased:   "CODE_NOT_ERASED",
		hal.CodeFlash:       "CODE_FLASH",
		hal.CodeUnsupported: "CODE_UNSUPPORTED",
		hal.CodeInvalid:     "CODE_INVALID",
		hal.CodeBusy:        "CODE_BUSY",
		hal.CodeNoImage:     "CODE_NO_IMAGE",
	}
	if len(halpb.Code_name) != len(want) {
		t.Errorf("hal.proto has %d codes, hal has %d", len(halpb.Code_name), len(want))
	}
	for c, name := range want {
		if got := halpb.Code(c).String(); got != name {
			t.Errorf("hal code %d (%v) is %s on the wire, want %s", int(c), c, got, name)
		}
	}
}

func TestStatus_ContextErrorsStayContextErrors(t *testing.T) {
	for _, err := range []error{context.DeadlineExceeded, fmt.Errorf("erase: %w", context.Canceled)} {
		if perr, ok := fromStatus(toStatus(err)); ok {
			t.Errorf("%v came back as a port error %v; the host must report it as a deadline or cancellation", err, perr)
		}
	}
}

// FuzzStatusRoundTrip: any port error crosses a unary call with its code
// and its message (made valid UTF-8).
func FuzzStatusRoundTrip(f *testing.F) {
	f.Add(int32(hal.CodeMisaligned), "write ota at 0x3: offset is not a multiple of 8")
	f.Add(int32(hal.CodeUnknown), "")
	f.Add(int32(99), "a code from a newer plugin")
	f.Add(int32(hal.CodeFlash), "bad \xff\xfe bytes")
	f.Fuzz(func(t *testing.T, code int32, msg string) {
		in := fmt.Errorf("wrapped: %w", &hal.Error{Code: hal.Code(code), Msg: msg})
		out, ok := fromStatus(toStatus(in))
		if !ok {
			t.Fatalf("%q (code %d) did not come back as a port error", in, code)
		}
		if hal.CodeOf(out) != hal.Code(code) {
			t.Errorf("code %d came back as %d", code, hal.CodeOf(out))
		}
		want := in.Error()
		if !utf8.ValidString(want) {
			want = strings.ToValidUTF8(want, "\uFFFD")
		}
		if out.Error() != want {
			t.Errorf("message %q came back as %q", want, out.Error())
		}
		if !errors.Is(out, &hal.Error{Code: hal.Code(code)}) {
			t.Errorf("errors.Is fails for code %d", code)
		}
	})
}

// FuzzLogMessage: whatever a plugin writes on stderr, explaining its exit
// never panics and keeps a non-JSON line as it is.
func FuzzLogMessage(f *testing.F) {
	f.Add(`{"@level":"error","@message":"flash gone","error":"EIO"}`)
	f.Add(`panic: runtime error: index out of range`)
	f.Add(`{"@message":5}`)
	f.Fuzz(func(t *testing.T, line string) {
		got := logMessage(line)
		if !strings.HasPrefix(strings.TrimSpace(line), "{") && got != line {
			t.Errorf("logMessage(%q) = %q, want the line unchanged", line, got)
		}
	})
}
