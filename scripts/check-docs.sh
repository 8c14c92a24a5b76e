#!/usr/bin/env bash
# Checks the docs against the tree, so the map cannot drift from the code:
#   - every repository path named in ARCHITECTURE.md (anywhere: tables, prose, diagrams),
#     and every one in backticks in README.md and docs/*.md (`src/…`, `python/…`,
#     `scripts/…`, `tests/…`, `benches/…`, `docs/…`, `examples/…`, `csrc/…`) exists; a
#     trailing `/` names a directory, `{a,b}.rs` names each file, and a `::name` or
#     `:line` suffix is ignored;
#   - README.md stays a front door: at most 250 lines;
#   - no doc names a work item or ticket number ("issue 12", "ticket #3").
# Prints each problem with the file it is in and exits 1 if there is any. Needs only bash,
# grep and sed; runs in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

docs=(ARCHITECTURE.md README.md)
for page in docs/*.md; do
    [[ -e $page ]] && docs+=("$page")
done

roots='src|python|scripts|tests|benches|docs|examples|csrc'
failures=0
fail() {
    echo "check-docs: $*" >&2
    failures=$((failures + 1))
}

# Expands `dir/{a,b}.rs` into `dir/a.rs dir/b.rs` (one level of braces is enough here).
expand() {
    local path=$1
    if [[ $path =~ ^([^{]*)\{([^}]*)\}(.*)$ ]]; then
        local head=${BASH_REMATCH[1]} alts=${BASH_REMATCH[2]} tail=${BASH_REMATCH[3]} alt
        IFS=, read -ra parts <<<"$alts"
        for alt in "${parts[@]}"; do
            echo "$head$alt$tail"
        done
    else
        echo "$path"
    fi
}

for doc in "${docs[@]}"; do
    [[ -e $doc ]] || { fail "$doc is missing"; continue; }
    # ARCHITECTURE.md is the map: every path-like word in it. Elsewhere, the leading word of
    # each backticked span.
    if [[ $doc == ARCHITECTURE.md ]]; then
        spans() { grep -oE "(^|[^A-Za-z0-9_/.-])($roots)/[A-Za-z0-9_./{},*<>-]*" "$doc" | sed -E 's/^[^a-z]//' | sort -u; }
    else
        spans() { grep -o '`[^`]*`' "$doc" | sed 's/^`//; s/`$//' | sort -u; }
    fi
    while IFS= read -r span; do
        path=${span%% *}
        path=${path%%::*}
        path=${path%%:[0-9]*}
        path=${path%[.,;]}
        [[ $path =~ ^($roots)/ ]] || continue
        # Globs and placeholders (`tests/*.rs`, `docs/<page>`) name no single path.
        [[ $path == *'*'* || $path == *'<'* || $path == *'…'* || $path == *'...'* ]] && continue
        while IFS= read -r one; do
            [[ -e $one ]] || fail "$doc names \`$one\`, which does not exist"
        done < <(expand "$path")
    done < <(spans)
    if grep -nEi '(issue|ticket|work item)[ -]*#?[0-9]' "$doc" >/dev/null; then
        while IFS= read -r hit; do
            fail "$doc:${hit%%:*} names a work item or ticket number"
        done < <(grep -nEi '(issue|ticket|work item)[ -]*#?[0-9]' "$doc")
    fi
done

lines=$(wc -l <README.md)
if ((lines > 250)); then
    fail "README.md has $lines lines; keep it a front door of at most 250 (details go under docs/)"
fi

if ((failures > 0)); then
    echo "check-docs: $failures problem(s)" >&2
    exit 1
fi
echo "check-docs: ${#docs[@]} pages, paths exist, README.md $lines lines"
