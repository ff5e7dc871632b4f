package bus

import (
	"strings"
	"testing"
)

// Any event name and data survive framing: parsed as the EventSource spec
// says, the frame is one event with the name (less the bytes that would end
// its line) and the data (line ends normalised to LF), after any frame
// before it.
func FuzzAppendFrame(f *testing.F) {
	f.Add("light", []byte("<p>on</p>"))
	f.Add("", []byte(""))
	f.Add("x\r\ndata: evil\n\nevent: y\x00", []byte("ok"))
	f.Add(" spaced: name", []byte(" a\r\n\r\rb\n\nc\r"))
	f.Add("\n", []byte("\n"))
	f.Add("\xee", []byte("\xff\r"))
	f.Fuzz(func(t *testing.T, event string, data []byte) {
		frame := AppendFrame(Frame("before", []byte("1")), event, data)
		evs, _, _ := parseSSE(t, frame)
		var name []byte // byte by byte: event need not be UTF-8
		for i := 0; i < len(event); i++ {
			if c := event[i]; c != '\r' && c != '\n' && c != 0 {
				name = append(name, c)
			}
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
		if len(evs) != 2 || evs[0] != (parsed{"before", "1"}) || evs[1] != (parsed{string(name), want}) {
			t.Fatalf("AppendFrame(%q, %q) = %q, parsed as %q", event, data, frame, evs)
		}
	})
}
