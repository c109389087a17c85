// Renders an Ollama TEMPLATE with Go's text/template over .Messages (Role, Content), as Ollama
// does, for each case of cases.json, and compares with the case's expected text.
//
//	go run modelfile_render.go template.txt cases.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type testCase struct {
	Messages []message `json:"messages"`
	Expected string    `json:"expected"`
}

func main() {
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	data, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	var cases []testCase
	if err := json.Unmarshal(data, &cases); err != nil {
		panic(err)
	}
	t := template.Must(template.New("modelfile").Parse(string(src)))
	failed := 0
	for i, c := range cases {
		var b strings.Builder
		if err := t.Execute(&b, map[string]any{"Messages": c.Messages}); err != nil {
			panic(err)
		}
		ok := b.String() == c.Expected
		if !ok {
			failed++
		}
		out, _ := json.Marshal(map[string]any{"check": "Ollama TEMPLATE (Go) vs Jinja chat template", "case": i,
			"messages": len(c.Messages), "ok": ok, "go": b.String(), "jinja": c.Expected})
		fmt.Println(string(out))
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d of %d conversations render differently\n", failed, len(cases))
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "all %d conversations render the same\n", len(cases))
}
