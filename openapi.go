// Package cairn holds what the binary embeds from the repository's
// generated files: the OpenAPI document of the REST API. The code lives
// in the packages below (see README.md).
package cairn

import _ "embed" // for OpenAPI

// OpenAPI is the OpenAPI (Swagger 2.0) document of the REST API, as buf's
// openapiv2 plugin generates it from proto/ into api/cairn.swagger.json
// (make generate). The server answers it at GET /openapi.json.
//
//go:embed api/cairn.swagger.json
var OpenAPI []byte
