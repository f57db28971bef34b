package hal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	halpb "github.com/otaport/otaport/core/hal/proto"
)

// TestCodeEnum_MatchesHalCodes keeps hal.proto's Code enum and hal.Code in
// step: the wire carries hal.Code's numbers.
func TestCodeEnum_MatchesHalCodes(t *testing.T) {
	want := map[Code]string{
		CodeUnknown:     "CODE_UNKNOWN",
		CodeOutOfBounds: "CODE_OUT_OF_BOUNDS",
		CodeMisaligned:  "CODE_MISALIGNED",
		CodeNotErased:   "CODE_NOT_ERASED",
		CodeFlash:       "CODE_FLASH",
		CodeUnsupported: "CODE_UNSUPPORTED",
		CodeInvalid:     "CODE_INVALID",
		CodeBusy:        "CODE_BUSY",
		CodeNoImage:     "CODE_NO_IMAGE",
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
	f.Add(int32(CodeMisaligned), "write ota at 0x3: offset is not a multiple of 8")
	f.Add(int32(CodeUnknown), "")
	f.Add(int32(99), "a code from a newer plugin")
	f.Add(int32(CodeFlash), "bad \xff\xfe bytes")
	f.Fuzz(func(t *testing.T, code int32, msg string) {
		in := fmt.Errorf("wrapped: %w", &Error{Code: Code(code), Msg: msg})
		out, ok := fromStatus(toStatus(in))
		if !ok {
			t.Fatalf("%q (code %d) did not come back as a port error", in, code)
		}
		if CodeOf(out) != Code(code) {
			t.Errorf("code %d came back as %d", code, CodeOf(out))
		}
		want := in.Error()
		if !utf8.ValidString(want) {
			want = strings.ToValidUTF8(want, "\uFFFD")
		}
		if out.Error() != want {
			t.Errorf("message %q came back as %q", want, out.Error())
		}
		if !errors.Is(out, &Error{Code: Code(code)}) {
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
