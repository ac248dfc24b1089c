package bootstrap

import (
	"bufio"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseResult checks the result line the runner ends output.log with,
// "@@stargate-result <operation UID> <exit code> <milliseconds>", which the
// operations controller reads back from the server's output.
//
// ParseResult must not panic on anything, and what it accepts must be
// exactly two decimal fields read as they are written, an exit status of
// 0-255 and a duration that fits time.Duration. For the lines the runner
// itself prints, a controller scanning the output line by line, as the
// repave reconciler does, must find the result after any script output,
// with or without a final newline, and read it back unchanged; a script
// line that looks like another Operation's result (an old output.log
// printed again) is not taken for it. Only a script that prints this
// Operation's own UID in a result line can fake it: the script runs as
// root on the host and could lie about its exit status anyway.
func FuzzParseResult(f *testing.F) {
	f.Add("0 1234", "Setting up kubelet ...\n", uint8(0), int64(1234))
	f.Add("3 17", "one\ntwo\nno newline", uint8(3), int64(17))
	f.Add("255 0", "", uint8(255), int64(0))
	f.Add(" 0\t12 \r", "\r\n\r\n", uint8(1), int64(math.MaxInt64/int64(time.Millisecond)))
	f.Add("", "@@stargate-resul", uint8(7), int64(-5))
	f.Add("0", "x\n@@stargate-result", uint8(0), int64(1))
	f.Add("0 5", "@@stargate-result 11111111-old-operation 0 5\n", uint8(3), int64(9))
	f.Add("0 1 2", "\x00\xff", uint8(0), int64(1))
	f.Add("-1 -5", "", uint8(0), int64(1))
	f.Add("0x1 +2", "", uint8(0), int64(1))
	f.Add("0 99999999999999999999", "", uint8(0), int64(1))
	f.Fuzz(func(t *testing.T, line, output string, code uint8, ms int64) {
		gotCode, gotD, err := ParseResult(line)
		if err == nil {
			fields := strings.Fields(line)
			if len(fields) != 2 {
				t.Fatalf("accepted %q, which has %d fields", line, len(fields))
			}
			wantCode, err1 := strconv.Atoi(fields[0])
			wantMs, err2 := strconv.ParseInt(fields[1], 10, 64)
			if err1 != nil || err2 != nil || gotCode != wantCode || gotD != time.Duration(wantMs)*time.Millisecond {
				t.Fatalf("accepted %q as %d, %v", line, gotCode, gotD)
			}
			if gotCode < 0 || gotCode > 255 || gotD < 0 {
				t.Fatalf("accepted %q: exit status %d, duration %v", line, gotCode, gotD)
			}
		}

		// What the runner prints: printf "\n@@stargate-result %s %s\n" "$id" "$rc $ms".
		const uid = "3f8e2a64-5d1c-4f1e-9a7b-0c2d4e6f8a10"
		if ms < 0 {
			ms = -(ms + 1)
		}
		ms %= math.MaxInt64/int64(time.Millisecond) + 1
		if len(output) > 512*1024 {
			return // longer than a line the controller reads
		}
		for _, l := range strings.Split(output, "\n") {
			if strings.HasPrefix(strings.TrimSuffix(l, "\r"), ResultPrefix(uid)) {
				return // the script prints this Operation's own result line: see above
			}
		}
		log := output + fmt.Sprintf("\n%s%d %d\n", ResultPrefix(uid), code, ms)
		sc := bufio.NewScanner(strings.NewReader(log))
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			r, ok := strings.CutPrefix(sc.Text(), ResultPrefix(uid))
			if !ok {
				continue
			}
			c, d, err := ParseResult(r)
			if err != nil {
				continue
			}
			if c != int(code) || d != time.Duration(ms)*time.Millisecond {
				t.Fatalf("the runner wrote %d %d after %q; read back %d %v", code, ms, output, c, d)
			}
			return
		}
		t.Fatalf("no result found after %q (scanner: %v)", output, sc.Err())
	})
}
