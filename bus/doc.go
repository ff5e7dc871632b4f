// Package bus is an in-process event emitter for Server-Sent Events.
//
// A broadcaster renders each state change once and publishes the pre-framed
// SSE bytes (see Frame) to a topic; the bus only fans the shared bytes out,
// so per-client cost is a pointer copy, never a render.
//
// Every subscriber has a bounded queue. Events carrying a Key coalesce with a
// pending event of the same Key, so a lagging client skips stale states of a
// swappable part instead of accumulating them. A subscriber whose queue still
// overflows is evicted (its Done channel closes, its notify callback runs)
// rather than ever blocking the publisher; the client reconnects and
// receives a fresh snapshot.
//
// The emitter runs no goroutines; topics without subscribers are forgotten.
package bus
