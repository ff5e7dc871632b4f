// Package keylock serialises work per key with a fixed set of mutexes.
package keylock

import "sync"

// Locks holds one mutex per hash bucket: keys that hash alike share one,
// so with this many few do, and the work of one key rarely waits behind
// another's, at a fixed cost whatever the number of keys.
type Locks [1024]sync.Mutex

// For returns key's mutex.
func (l *Locks) For(key string) *sync.Mutex {
	h := uint32(2166136261) // 32-bit FNV-1a, without allocating a hash
	for i := range len(key) {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &l[h%uint32(len(l))]
}
