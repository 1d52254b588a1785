//go:build ignore

// extract.go writes operations.json, the operations of Gitea's API that the
// module calls, from Gitea's own description (Swagger 2.0), in the shape of
// internal/githubtest's GitHub extract (OpenAPI 3 paths, $refs resolved).
//
//	dir=$(go mod download -json code.gitea.io/gitea@v1.27.3 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
//	go run extract.go "$dir/templates/swagger/v1_json.tmpl" > operations.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// operations are the method and path of each operation kept.
var operations = map[string][]string{
	"/repos/{owner}/{repo}/statuses/{sha}":         {"get", "post"},
	"/repos/{owner}/{repo}/commits/{ref}/status":   {"get"},
	"/repos/{owner}/{repo}/commits/{ref}/statuses": {"get"},
}

type obj = map[string]any

var doc obj

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		fail(err)
	}
	paths := obj{}
	for p, methods := range operations {
		out := obj{}
		for _, m := range methods {
			out[m] = convert(doc["paths"].(obj)[p].(obj)[m].(obj))
		}
		paths[p] = out
	}
	res := obj{
		"source":  "code.gitea.io/gitea v1.27.3 (MIT), templates/swagger/v1_json.tmpl: Gitea's own Swagger 2.0 description, converted",
		"servers": []any{obj{"url": "https://gitea.example/api/v1"}},
		"paths":   paths,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(res); err != nil {
		fail(err)
	}
}

// convert turns a Swagger 2.0 operation into the OpenAPI 3 shape.
func convert(op obj) obj {
	out := obj{"operationId": op["operationId"], "summary": op["summary"]}
	var params []any
	for _, p := range op["parameters"].([]any) {
		p := p.(obj)
		if p["in"] == "body" {
			out["requestBody"] = obj{
				"required": p["required"] == true,
				"content":  obj{"application/json": obj{"schema": deref(p["schema"], nil)}},
			}
			continue
		}
		sch := obj{}
		for _, k := range []string{"type", "format", "enum", "items"} {
			if v, ok := p[k]; ok {
				sch[k] = v
			}
		}
		params = append(params, obj{"name": p["name"], "in": p["in"], "required": p["required"] == true,
			"description": p["description"], "schema": sch})
	}
	out["parameters"] = params
	resps := obj{}
	for code, r := range op["responses"].(obj) {
		r := r.(obj)
		if ref, ok := r["$ref"].(string); ok {
			r = doc["responses"].(obj)[strings.TrimPrefix(ref, "#/responses/")].(obj)
		}
		entry := obj{"description": r["description"]}
		if s, ok := r["schema"]; ok {
			entry["content"] = obj{"application/json": obj{"schema": deref(s, nil)}}
		}
		resps[code] = entry
	}
	out["responses"] = resps
	return out
}

// deref resolves $refs to definitions; a definition met again inside
// itself (Repository's parent) becomes {} (any value).
func deref(v any, seen []string) any {
	switch v := v.(type) {
	case obj:
		if ref, ok := v["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			for _, s := range seen {
				if s == name {
					return obj{}
				}
			}
			return deref(doc["definitions"].(obj)[name], append(seen, name))
		}
		out := obj{}
		for k, val := range v {
			if strings.HasPrefix(k, "x-") {
				continue
			}
			if k == "properties" {
				props := obj{}
				for pn, pv := range val.(obj) {
					props[pn] = deref(pv, seen)
				}
				out[k] = props
				continue
			}
			out[k] = deref(val, seen)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deref(e, seen)
		}
		return out
	}
	return v
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
