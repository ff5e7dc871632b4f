package bus

import (
	"strconv"
	"time"
)

// Frame returns data as one SSE event of the given type; see AppendFrame.
func Frame(event string, data []byte) []byte {
	return AppendFrame(nil, event, data)
}

// AppendFrame appends data framed as one SSE event to dst. Each line of data
// (split on CRLF, CR or LF, all terminators in the EventSource spec) becomes a
// "data:" field, so clients rebuild it joined with LF. Empty data still yields
// one "data:" line because the spec drops events with no data field. CR, LF
// and NUL are removed from event so a name cannot inject fields.
func AppendFrame(dst []byte, event string, data []byte) []byte {
	n := 1 // trailing blank line
	if name := cleanLen(event); name > 0 {
		n += len("event: \n") + name
	}
	for rest := data; ; {
		line, next, ok := cutLine(rest)
		n += len("data: \n") + len(line)
		if !ok {
			break
		}
		rest = next
	}
	if cap(dst)-len(dst) < n {
		// Exact size, one allocation (slices.Grow may take two under -race).
		dst = append(make([]byte, 0, len(dst)+n), dst...)
	}

	if cleanLen(event) > 0 {
		dst = append(dst, "event: "...)
		dst = appendClean(dst, event)
		dst = append(dst, '\n')
	}
	for rest := data; ; {
		line, next, ok := cutLine(rest)
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\n')
		if !ok {
			break
		}
		rest = next
	}
	return append(dst, '\n')
}

// Comment returns an SSE comment, which clients ignore; it keeps idle
// connections alive through proxies.
func Comment(text string) []byte {
	b := make([]byte, 0, len(": \n\n")+len(text))
	b = append(b, ": "...)
	b = appendClean(b, text)
	return append(b, "\n\n"...)
}

// Retry returns a frame setting the client's reconnection delay.
func Retry(d time.Duration) []byte {
	b := append(make([]byte, 0, 32), "retry: "...)
	b = strconv.AppendInt(b, max(d.Milliseconds(), 0), 10)
	return append(b, "\n\n"...)
}

// cutLine splits off the first line of b. ok reports whether a terminator was
// found; when it was, rest may be empty and is itself a (last) line. A plain
// loop beats bytes.IndexAny on the short lines typical of HTML fragments.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := 0
	for i < len(b) && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	if i == len(b) {
		return b, nil, false
	}
	j := i + 1
	if b[i] == '\r' && j < len(b) && b[j] == '\n' {
		j++
	}
	return b[:i], b[j:], true
}

func unsafeByte(c byte) bool { return c == '\r' || c == '\n' || c == 0 }

func cleanLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if unsafeByte(s[i]) {
			n--
		}
	}
	return n
}

func appendClean(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !unsafeByte(s[i]) {
			dst = append(dst, s[i])
		}
	}
	return dst
}
