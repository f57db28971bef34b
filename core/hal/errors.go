package hal

import (
	"errors"
	"fmt"
)

// Code classifies a port error so callers can branch on it, on either side
// of the plugin boundary.
type Code int

const (
	CodeUnknown     Code = iota // not classified
	CodeOutOfBounds             // offset or length past the partition
	CodeMisaligned              // offset not on the write alignment
	CodeNotErased               // programming over bytes that are not erased
	CodeFlash                   // the flash itself failed
	CodeUnsupported             // the port has no such capability
	CodeInvalid                 // a request that makes no sense (bad mode, size 0)
	CodeBusy                    // another call is in progress
	CodeNoImage                 // no valid image where one is needed
)

var codeNames = map[Code]string{
	CodeUnknown:     "unknown",
	CodeOutOfBounds: "out of bounds",
	CodeMisaligned:  "misaligned",
	CodeNotErased:   "not erased",
	CodeFlash:       "flash failure",
	CodeUnsupported: "unsupported",
	CodeInvalid:     "invalid request",
	CodeBusy:        "busy",
	CodeNoImage:     "no image",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", int(c))
}

// Sentinel errors, one per code, for errors.Is.
var (
	ErrOutOfBounds = &Error{Code: CodeOutOfBounds}
	ErrMisaligned  = &Error{Code: CodeMisaligned}
	ErrNotErased   = &Error{Code: CodeNotErased}
	ErrFlash       = &Error{Code: CodeFlash}
	ErrUnsupported = &Error{Code: CodeUnsupported}
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrBusy        = &Error{Code: CodeBusy}
	ErrNoImage     = &Error{Code: CodeNoImage}
)

// Error is a port error with a code. Two Errors match under errors.Is when
// their codes match, so errors.Is(err, hal.ErrMisaligned) works whatever the
// message, including for errors that crossed the plugin boundary.
type Error struct {
	Code Code
	Msg  string
}

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) error {
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Code.String()
	}
	return e.Msg
}

// Is reports whether target is an *Error of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CodeOf returns the code of the first *Error in err's chain, or CodeUnknown.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnknown
}
