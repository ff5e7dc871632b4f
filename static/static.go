// Package static holds the page's assets, embedded in the binary.
package static

import "embed"

// FS holds the stylesheet and the pinned htmx files.
//
//go:embed *.js *.css *.svg *.LICENSE
var FS embed.FS
