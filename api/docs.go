package api

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// docsFS holds Stoplight Elements 9.0.15 (npm @stoplight/elements,
// Apache-2.0, see docs/LICENSE.elements), the renderer Huma's own docs page
// loads from a CDN. Served from the binary, /docs works offline.
//
//go:embed docs/web-components.min.js docs/styles.min.css docs/LICENSE.elements docs/web-components.min.js.LICENSE.txt
var docsFS embed.FS

// docsCSP lets the page load only what the node serves.
var docsCSP = strings.Join([]string{
	"default-src 'none'",
	"base-uri 'none'",
	"connect-src 'self'",
	"form-action 'none'",
	"frame-ancestors 'none'",
	"img-src 'self' data:",
	"font-src 'self' data:",
	"script-src 'self'",
	"style-src 'self' 'unsafe-inline'",
}, "; ")

const docsPage = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="referrer" content="no-referrer">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>SMQ API Reference</title>
    <link rel="stylesheet" href="/docs/assets/styles.min.css">
    <script src="/docs/assets/web-components.min.js"></script>
  </head>
  <body style="height: 100vh;">
    <elements-api
      apiDescriptionUrl="/openapi.yaml"
      router="hash"
      layout="sidebar"
      tryItCredentialsPolicy="same-origin"
    ></elements-api>
  </body>
</html>
`

func serveDocsPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", docsCSP)
	_, _ = w.Write([]byte(docsPage))
}

// docsAssets serves the renderer's files, cacheable for a day.
func docsAssets() http.Handler {
	sub, err := fs.Sub(docsFS, "docs")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}
