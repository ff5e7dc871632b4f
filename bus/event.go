package bus

// Event is one unit of delivery. Frame is shared by every subscriber and must
// not be modified after Publish.
type Event struct {
	// Key, when non-empty, lets a newer event replace a pending one with the
	// same Key in place: only the latest state of a part matters, and keeping
	// the old position preserves ordering relative to other parts.
	Key string
	// Frame holds complete SSE wire bytes, e.g. from Frame.
	Frame []byte
}
