package handlers

import (
	"testing"
	"time"
)

func TestSettlerReleasesOnceAfterABurst(t *testing.T) {
	released := make(chan int, 10)
	s := newSettler(50*time.Millisecond, 100, func(opens, closes int) { released <- opens + closes })
	defer s.stop()
	// Everyone leaving is a burst too.
	for range 100 {
		s.opened()
	}
	for range 50 {
		s.ended()
	}
	select {
	case n := <-released:
		if n != 150 {
			t.Fatalf("released after %d opens and closes, want 150", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no release after the burst went quiet")
	}
	// A trickle afterwards is not a burst; closes count as opens do.
	for range 10 {
		s.ended()
	}
	select {
	case n := <-released:
		t.Fatalf("released again after %d opens", n)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestSettlerWaitsForTheBurstToEnd(t *testing.T) {
	released := make(chan int, 10)
	s := newSettler(time.Second, 1, func(opens, closes int) { released <- opens + closes })
	defer s.stop()
	// Opens closer together than the quiet period keep pushing it back.
	for range 6 {
		s.opened()
		time.Sleep(20 * time.Millisecond)
		select {
		case <-released:
			t.Fatal("released while opens were still arriving")
		default:
		}
	}
	if n := <-released; n != 6 {
		t.Fatalf("released after %d opens, want 6", n)
	}
}

func TestSettlerStopCancels(t *testing.T) {
	released := make(chan int, 1)
	s := newSettler(20*time.Millisecond, 1, func(opens, closes int) { released <- opens + closes })
	s.opened()
	s.stop()
	s.opened()
	select {
	case <-released:
		t.Fatal("released after stop")
	case <-time.After(200 * time.Millisecond):
	}
}
