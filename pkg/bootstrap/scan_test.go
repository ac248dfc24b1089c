package bootstrap

import (
	"strings"
	"testing"
)

// A script line longer than MaxOutputLine does not stop the reading: the
// result line after it is still found, and every byte is read.
func TestOutputScannerFindsResultAfterHugeLine(t *testing.T) {
	huge := strings.Repeat("x", 3*MaxOutputLine+5)
	out := "first\r\n" + huge + "\n" + ResultPrefix("op") + "0 12\nlast"
	sc := NewOutputScanner(strings.NewReader(out))
	var lines []string
	total := 0
	for sc.Scan() {
		lines = append(lines, sc.Text())
		total += len(sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scan ended with %v", err)
	}
	if lines[0] != "first" || lines[len(lines)-1] != "last" || lines[len(lines)-2] != ResultPrefix("op")+"0 12" {
		t.Fatalf("lines: first %q, last two %q", lines[0], lines[len(lines)-2:])
	}
	if want := len("first") + len(huge) + len(ResultPrefix("op")+"0 12") + len("last"); total != want {
		t.Errorf("read %d bytes of lines, want %d", total, want)
	}
	for _, l := range lines {
		if len(l) > MaxOutputLine {
			t.Errorf("a piece of %d bytes, longer than %d", len(l), MaxOutputLine)
		}
	}
}
