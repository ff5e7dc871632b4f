// Package templates holds the page and the fragments the stream swaps into
// it, embedded in the binary.
package templates

import (
	"embed"
	"html/template"
)

//go:embed *.html
var files embed.FS

// Parse returns the page template and its named parts, each usable on its
// own (an embed can reuse them): "page" and "error-page"; the parts the
// stream swaps, "status", "light", "regions", "messages", "latency",
// "tabs"; and "head", "you-style", "conn", "you", "region", "message",
// "hi-form", "about".
func Parse() (*template.Template, error) {
	return template.ParseFS(files, "*.html")
}
