package bootstrap

import (
	"bufio"
	"bytes"
	"io"
)

// MaxOutputLine is the longest line of script output read as one line; a
// longer one is read as pieces of this size.
const MaxOutputLine = 1024 * 1024

// NewOutputScanner reads script output line by line, like bufio.ScanLines,
// except that a line longer than MaxOutputLine comes out in pieces instead
// of ending the scan with bufio.ErrTooLong: a script that prints one huge
// line must not hide the result line that follows it.
func NewOutputScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), MaxOutputLine)
	sc.Split(scanOutputLines(MaxOutputLine))
	return sc
}

func scanOutputLines(maxLine int) bufio.SplitFunc {
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 && i < maxLine {
			return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
		}
		if len(data) >= maxLine {
			return maxLine, data[:maxLine], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), bytes.TrimSuffix(data, []byte{'\r'}), nil
		}
		return 0, nil, nil
	}
}
