// Package templates holds the page and the fragments the stream swaps into
// it, embedded in the binary.
package templates

import (
	"embed"
	"html/template"
)

//go:embed *.html
var files embed.FS

// Parse returns the page template and its named fragments: "page", and the
// swappable parts "status", "light", "regions", "messages", "latency",
// "tabs", plus "hi-form".
func Parse() (*template.Template, error) {
	return template.ParseFS(files, "*.html")
}
