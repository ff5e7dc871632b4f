// Package shrink lets maps give back what a crowd made them grow to.
package shrink

import "maps"

// Delete deletes k from *m and, once *m is empty, puts a new map in its
// place: a Go map keeps the tables of its largest size, so one that held a
// crowd would keep their memory after they all left.
func Delete[M ~map[K]V, K comparable, V any](m *M, k K) {
	delete(*m, k)
	if len(*m) == 0 {
		*m = make(M)
	}
}

// DeleteFunc deletes every entry of *m for which del is true and, as
// Delete does, puts a new map in its place once it is empty.
func DeleteFunc[M ~map[K]V, K comparable, V any](m *M, del func(K, V) bool) {
	maps.DeleteFunc(*m, del)
	if len(*m) == 0 {
		*m = make(M)
	}
}
