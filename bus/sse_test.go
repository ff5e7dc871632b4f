package bus

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

type parsed struct {
	typ, data string
}

// parseSSE follows the WHATWG EventSource "interpret an event stream"
// algorithm closely enough to check framing: it returns dispatched events,
// the last retry value (-1 if none) and the number of comment lines.
func parseSSE(t *testing.T, stream []byte) (evs []parsed, retry, comments int) {
	t.Helper()
	retry = -1
	var typ string
	var data strings.Builder
	s := string(stream)
	for s != "" {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			t.Fatalf("stream ends with an unterminated line %q", s)
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]

		if line == "" { // dispatch
			d := data.String()
			if d != "" {
				evs = append(evs, parsed{typ, strings.TrimSuffix(d, "\n")})
			}
			typ = ""
			data.Reset()
			continue
		}
		if line[0] == ':' {
			comments++
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
		case "retry":
			if n, err := strconv.Atoi(value); err == nil {
				retry = n
			}
		case "id":
		default:
			t.Errorf("unexpected field %q", field)
		}
	}
	if data.Len() != 0 || typ != "" {
		t.Errorf("stream ends inside an event")
	}
	return evs, retry, comments
}

func TestFrame(t *testing.T) {
	tests := []struct {
		name, event, data, want, wantData string
	}{
		{"single", "msg", "hi", "event: msg\ndata: hi\n\n", "hi"},
		{"no event", "", "hi", "data: hi\n\n", "hi"},
		{"empty data", "ping", "", "event: ping\ndata: \n\n", ""},
		{"lf", "x", "a\nb", "event: x\ndata: a\ndata: b\n\n", "a\nb"},
		{"crlf", "x", "a\r\nb", "event: x\ndata: a\ndata: b\n\n", "a\nb"},
		{"cr", "x", "a\rb", "event: x\ndata: a\ndata: b\n\n", "a\nb"},
		{"mixed", "", "a\r\n\r\rb\n\nc", "data: a\ndata: \ndata: \ndata: b\ndata: \ndata: c\n\n", "a\n\n\nb\n\nc"},
		{"trailing newline", "", "a\n", "data: a\ndata: \n\n", "a\n"},
		{"cr then lf split", "", "a\r\r\n", "data: a\ndata: \ndata: \n\n", "a\n\n"},
		{"leading space kept", "", " a", "data:  a\n\n", " a"},
		{"injection", "x\r\ndata: evil\n\nevent: y\x00", "ok", "event: xdata: evilevent: y\ndata: ok\n\n", "ok"},
		{"name only bad bytes", "\r\n", "ok", "data: ok\n\n", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			got := Frame(tt.event, data)
			if string(got) != tt.want {
				t.Fatalf("Frame = %q, want %q", got, tt.want)
			}
			if n := testing.AllocsPerRun(10, func() { Frame(tt.event, data) }); n > 1 {
				t.Errorf("Frame allocated %v times, want 1", n)
			}
			evs, _, _ := parseSSE(t, got)
			if len(evs) != 1 {
				t.Fatalf("parsed %d events, want 1", len(evs))
			}
			if evs[0].data != tt.wantData {
				t.Errorf("round trip data = %q, want %q", evs[0].data, tt.wantData)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	dst := []byte("data: prev\n\n")
	dst = AppendFrame(dst, "a", []byte("1\n2"))
	dst = AppendFrame(dst, "b", nil)
	evs, _, _ := parseSSE(t, dst)
	want := []parsed{{"", "prev"}, {"a", "1\n2"}, {"b", ""}}
	if len(evs) != len(want) {
		t.Fatalf("got %q, want %q", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d = %q, want %q", i, evs[i], want[i])
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		AppendFrame(dst[:0], "a", []byte("x\ny"))
	}); n != 0 {
		t.Errorf("AppendFrame into spare capacity allocated %v times", n)
	}
}

func TestCommentRetry(t *testing.T) {
	if got := string(Comment("keep-alive")); got != ": keep-alive\n\n" {
		t.Errorf("Comment = %q", got)
	}
	if got := string(Comment("a\r\ndata: x\n")); got != ": adata: x\n\n" {
		t.Errorf("Comment injection = %q", got)
	}
	if got := string(Retry(2500 * time.Millisecond)); got != "retry: 2500\n\n" {
		t.Errorf("Retry = %q", got)
	}
	if got := string(Retry(-time.Second)); got != "retry: 0\n\n" {
		t.Errorf("Retry negative = %q", got)
	}

	stream := bytes.Join([][]byte{Retry(3 * time.Second), Comment("hb"), Frame("e", []byte("d"))}, nil)
	evs, retry, comments := parseSSE(t, stream)
	if retry != 3000 || comments != 1 || len(evs) != 1 || evs[0] != (parsed{"e", "d"}) {
		t.Errorf("parsed retry=%d comments=%d events=%q", retry, comments, evs)
	}
}

var fragment = func() []byte {
	var b bytes.Buffer
	for b.Len() < 1024 {
		b.WriteString("<li class=\"user\" id=\"u-42\">\n  <span>Alice</span> <em>online</em>\r\n</li>\n")
	}
	return b.Bytes()
}()

func BenchmarkFrame(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(fragment)))
	for b.Loop() {
		Frame("users", fragment)
	}
}
