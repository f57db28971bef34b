package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tool is a small tree with each kind of outcome.
func tool() *cobra.Command {
	root := NewRoot("tool", "a tool", "")
	var n Size
	sized := &cobra.Command{Use: "sized", RunE: func(cmd *cobra.Command, _ []string) error {
		_, err := cmd.OutOrStdout().Write([]byte(n.String() + "\n"))
		return err
	}}
	sized.Flags().Var(&n, "size", "a size")
	root.AddCommand(
		sized,
		&cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return errors.New("fail: the disk is full") }},
		&cobra.Command{Use: "exit3", RunE: func(*cobra.Command, []string) error { return ExitError{Code: 3} }},
		Group("group", "a group", &cobra.Command{Use: "status", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}),
	)
	return root
}

func TestRun_ExitStatusAndMessages(t *testing.T) {
	tests := []struct {
		args             []string
		code             int
		wantOut, wantErr string
	}{
		{[]string{"sized", "--size", "32KiB"}, 0, "32KiB\n", ""},
		{[]string{"sized", "--size", "0x8000"}, 0, "32KiB\n", ""},
		{[]string{"sized", "--size", "1TiB"}, 0, "1TiB\n", ""},
		{[]string{"sized", "--size", "32KB"}, 2, "", "tool sized: invalid argument \"32KB\" for \"--size\" flag: size \"32KB\" uses \"KB\""},
		{[]string{"fail"}, 1, "", "tool fail: the disk is full\n"},
		{[]string{"exit3"}, 3, "", ""},
		{[]string{"--help"}, 0, "Usage:\n  tool [command]\n", ""},
		{[]string{"group", "--help"}, 0, "Usage:\n  tool group [command]\n", ""},
		{[]string{"--version"}, 0, "tool version ", ""},
		{[]string{}, 2, "", "tool: give a command: completion, exit3, fail, group, sized\nRun 'tool --help' for usage.\n"},
		{[]string{"sizd"}, 2, "", `tool: unknown command "sizd" for "tool"; did you mean sized?`},
		{[]string{"xyzzy", "--version"}, 2, "", `unknown command "xyzzy" for "tool"; the commands are: completion, exit3, fail, group, sized`},
		{[]string{"group", "stauts"}, 2, "", `tool group: unknown command "stauts" for "tool group"; did you mean status?`},
		{[]string{"group"}, 2, "", "give a command: status"},
		{[]string{"group", "status", "extra"}, 2, "", `tool group status: unexpected argument "extra"`},
		{[]string{"--log-format", "xml", "fail"}, 2, "", "want text or json"},
		{[]string{"--nosuch"}, 2, "", "unknown flag: --nosuch"},
		{[]string{"help", "group", "status"}, 0, "Usage:\n  tool group status [flags]\n", ""},
		{[]string{"help", "group", "stauts"}, 2, "", `tool help: unknown command "stauts" for "tool group"; did you mean status?`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := Run(context.Background(), tool(), tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("tool %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out.String(), errb.String(), tt.code, tt.wantOut, tt.wantErr)
		}
		if tt.wantErr == "" && tt.code == 0 && errb.Len() > 0 {
			t.Errorf("tool %q: stderr %q, want nothing", tt.args, errb.String())
		}
	}
}

func TestUsage_IsUsageWithItsOwnMessage(t *testing.T) {
	cause := errors.New("give one SOURCE")
	err := Usage(cause)
	if !errors.Is(err, ErrUsage) || !errors.Is(err, cause) || err.Error() != "give one SOURCE" {
		t.Errorf("Usage(%v) = %v: want the message alone, ErrUsage and the cause", cause, err)
	}
	if Usage(nil) != nil {
		t.Error("Usage(nil) is not nil")
	}
}
