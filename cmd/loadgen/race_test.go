//go:build race

package main

// raceEnabled keeps the smoke test small under the race detector.
const raceEnabled = true
