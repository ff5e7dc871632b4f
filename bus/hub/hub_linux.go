package hub

import (
	"errors"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hubSys is the hub's epoll instance: one goroutine waits on every
// connection's socket (which the runtime's own poller no longer has).
type hubSys struct {
	ep   int // epoll descriptor; -1: use the portable engine
	wake int // eventfd that wakes the poller to stop

	// byFD finds a connection from an event. An event carries the
	// registration's generation as well, because a descriptor closed
	// after epoll_wait returned may already belong to a new connection.
	// Guarded by h.mu.
	byFD []*conn
	gen  uint32
}

// connSys is an epoll-watched connection: just its descriptor. The hub
// takes its own duplicate and closes the net.Conn, whose addresses, poll
// state and registration in the runtime's poller would cost more than the
// rest of an idle stream. The descriptor is used and closed only under
// c.mu, so it cannot be reused while a writer or the poller holds it.
type connSys struct {
	fd  int32
	gen uint32
	reg bool // the hub owns fd and it is in the epoll set
}

// writerSys is a writer's iovec scratch space.
type writerSys struct {
	iov []unix.Iovec
}

const (
	pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT | unix.EPOLLET
	maxIOV     = 1024 // IOV_MAX
	// drainLimit is how much a client may send on its stream in one go
	// before it is dropped: an EventSource sends nothing.
	drainLimit = 64 << 10
)

func (h *Hub) startPoller() {
	h.sys.ep, h.sys.wake = -1, -1
	if h.cfg.portable {
		return
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return // serve every connection with the portable engine
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return
	}
	h.sys.ep, h.sys.wake = ep, wake
	h.wg.Go(h.poll)
}

// polling reports whether connections are watched by epoll.
func (h *Hub) polling() bool { return h.sys.ep >= 0 }

func (h *Hub) wakePoller() {
	if h.sys.wake >= 0 {
		var one = [8]byte{1}
		_, _ = unix.Write(h.sys.wake, one[:])
	}
}

// stopPoller closes the descriptors once the poller has returned.
func (h *Hub) stopPoller() {
	if h.sys.ep >= 0 {
		unix.Close(h.sys.ep)
		unix.Close(h.sys.wake)
	}
}

// watch registers c with the poller, or with the portable engine when there
// is no epoll or no descriptor (a TLS connection, say). c.mu is held.
func (h *Hub) watch(c *conn) error {
	if c.closed {
		return nil // Shutdown got here first
	}
	sc, ok := c.nc.(syscall.Conn)
	if h.sys.ep < 0 || !ok {
		h.watchPortable(c)
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	// The duplicate shares the socket and its O_NONBLOCK; the original
	// leaves the runtime's poller.
	_ = c.nc.Close()
	c.nc = nil
	c.sys.fd = int32(fd)
	h.mu.Lock()
	if fd >= len(h.sys.byFD) {
		h.sys.byFD = append(h.sys.byFD, make([]*conn, fd+1-len(h.sys.byFD))...)
	}
	h.sys.gen++
	c.sys.gen = h.sys.gen
	h.sys.byFD[fd] = c // before EPOLL_CTL_ADD: its first event may come at once
	h.mu.Unlock()
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(fd), Pad: int32(c.sys.gen)}
	if err := unix.EpollCtl(h.sys.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		h.forget(c)
		unix.Close(fd)
		return err
	}
	c.sys.reg = true
	return nil
}

// unwatch takes c out of the epoll set and the descriptor table, then
// closes its descriptor: in that order, as closing frees the number for
// reuse. c.mu is held.
func (h *Hub) unwatch(c *conn) {
	if !c.sys.reg {
		return
	}
	c.sys.reg = false
	_ = unix.EpollCtl(h.sys.ep, unix.EPOLL_CTL_DEL, int(c.sys.fd), nil)
	h.forget(c)
	unix.Close(int(c.sys.fd))
}

func (h *Hub) forget(c *conn) {
	h.mu.Lock()
	if h.sys.byFD[c.sys.fd] == c {
		h.sys.byFD[c.sys.fd] = nil
	}
	h.mu.Unlock()
}

func (h *Hub) lookup(fd int32, gen int32) *conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fd < 0 || int(fd) >= len(h.sys.byFD) {
		return nil
	}
	if c := h.sys.byFD[fd]; c != nil && c.sys.gen == uint32(gen) {
		return c
	}
	return nil
}

// poll is the poller goroutine: it closes a connection as soon as its peer
// hangs up, kicks one whose socket became writable, and drops those behind
// for longer than the write timeout.
func (h *Hub) poll() {
	events := make([]unix.EpollEvent, 256)
	var junk [4096]byte
	every := min(max(h.cfg.WriteTimeout/10, 5*time.Millisecond), time.Second)
	tick := int(every / time.Millisecond)
	var swept time.Time
	for {
		n, err := unix.EpollWait(h.sys.ep, events, tick)
		if err != nil && !errors.Is(err, unix.EINTR) {
			time.Sleep(10 * time.Millisecond) // cannot happen with a valid set; don't spin
		}
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd < 0 {
				select {
				case <-h.stop:
					return
				default:
					continue
				}
			}
			c := h.lookup(ev.Fd, ev.Pad)
			if c == nil {
				continue // closed since, and perhaps its descriptor reused
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				h.close(c, ErrPeerClosed)
				continue
			}
			if ev.Events&unix.EPOLLIN != 0 {
				if err := h.drain(c, junk[:]); err != nil {
					h.close(c, err)
					continue
				}
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				c.kick()
			}
		}
		if now := time.Now(); now.Sub(swept) >= every {
			h.sweep(now)
			swept = now
		}
	}
}

// drain reads and discards what the client sent, to tell an EOF from data.
func (h *Hub) drain(c *conn, buf []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	for total := 0; ; {
		n, err := unix.Read(int(c.sys.fd), buf)
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return nil
		case err != nil || n == 0:
			return ErrPeerClosed
		case total+n > drainLimit:
			return ErrPeerSent
		default:
			total += n
		}
	}
}

// sendNonblocking writes as much of bufs as the socket takes now, in as few
// writev calls as it can (one, unless a batch has over 1,024 frames). c.mu
// is held.
func (h *Hub) sendNonblocking(w *writer, c *conn, bufs [][]byte) ([][]byte, error) {
	for bufs != nil {
		iov := w.sys.iov[:0]
		for _, b := range bufs {
			if len(b) == 0 {
				continue
			}
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			if iov = append(iov, v); len(iov) == maxIOV {
				break
			}
		}
		w.sys.iov = iov
		h.writes.Add(1)
		n, errno := writev(c.sys.fd, iov)
		clear(iov) // no stale pointers into frames
		switch errno {
		case 0:
		case unix.EAGAIN:
			return bufs, nil
		default:
			return nil, errno
		}
		// On a short write, loop: the next writev says EAGAIN, which
		// guarantees an EPOLLOUT edge when the socket drains.
		bufs = advance(bufs, n)
	}
	return nil, nil
}

func writev(fd int32, iov []unix.Iovec) (int, syscall.Errno) {
	for {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if e != unix.EINTR {
			return int(r), e
		}
	}
}
