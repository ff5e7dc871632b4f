//go:build !linux

package hub

// Without epoll every connection gets the portable engine: a goroutine that
// reads until EOF, and writes that block with a deadline.
type (
	hubSys    struct{}
	connSys   struct{}
	writerSys struct{}
)

func (h *Hub) startPoller()  {}
func (h *Hub) polling() bool { return false }
func (h *Hub) wakePoller()   {}
func (h *Hub) stopPoller()   {}

func (h *Hub) watch(c *conn) error {
	if !c.closed {
		h.watchPortable(c)
	}
	return nil
}

func (h *Hub) unwatch(*conn) {}

func (h *Hub) sendNonblocking(*writer, *conn, [][]byte) ([][]byte, error) {
	panic("hub: no non-blocking writes on this platform")
}
