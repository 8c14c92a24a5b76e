#!/usr/bin/env bash
# Checks the docs against the tree, so the map and the settings pages cannot drift from the
# code:
#   - paths: every repository path named in ARCHITECTURE.md (anywhere: tables, prose,
#     diagrams), and every one in backticks in README.md and docs/*.md (`src/…`, `python/…`,
#     `scripts/…`, `tests/…`, `benches/…`, `docs/…`, `examples/…`, `csrc/…`, `fuzz/…`)
#     exists; a trailing `/` names a directory, `{a,b}.rs` names each file, and a `::name` or
#     `:line` suffix is ignored;
#   - bare file names: a source file named without its root anywhere in these pages
#     (`behind.rs`, `tier/disk/evict.rs`, `ui/pages.js`) is the end of some file's path in
#     the tree (`git ls-files`), unless listed in `allowed_names` below;
#   - settings, both ways between the code and docs/operations.md:
#       * environment variables: every `FRAMECACHE_*`, `S3_*` or `AWS_*` name the product code
#         holds as a string literal (`var("FRAMECACHE_ROOT")`, `os.environ.get("S3_BUCKET")`,
#         `const TOKEN_ENV: &str = "FRAMECACHE_TOKEN"`) in any `.rs`/`.py`/`.pyi` file under
#         src/ or python/ (tests and benchmarks aside) is named in operations.md; every such
#         name in operations.md is read by that code, by a script (`${NAME`), or is in
#         `signer_reads` (read by the S3 signer's credential chain, not by framecache);
#       * command-line flags: every long flag the clap definitions declare (`#[arg(long …)]`
#         on a field, in any `.rs` file under src/) appears as `--flag` in operations.md, and
#         every `--flag` there is declared (or in `foreign_flags`, other tools' flags);
#       * Python keywords: every keyword of `FrameCache.__init__` in the type stubs (any
#         `.pyi` under python/ that defines `class FrameCache`) appears as `` `name=`` in
#         operations.md (and as `` `name` `` in docs/python.md), and every `` `name=`` in
#         operations.md is a keyword of some function of the stubs or of python/framecache/*.py;
#     the code is found by pattern, never by file name, so settings code can move;
#   - links between pages (`[..](operations.md#settings)`, `[..](#credentials)`) reach a
#     heading of the page they name;
#   - constants: a backticked `UPPER_CASE` name (`FINISH_ROUNDS`) is a word of the code;
#   - Rust paths: each segment of a backticked `Type::item` (`Error::NoFrame`) is a word of
#     the Rust code;
#   - CHANGELOG.md has one section per release, each with `### Added`, `### Changed`,
#     `### Fixed`, `### Removed` (or Deprecated, Security) at most once;
#   - README.md stays a front door: at most 250 lines;
#   - no page names a work item or ticket number ("issue 12", "ticket #3") or a path of one
#     machine (`/home/…`, `/work/…`, `/Users/…`, `/root/…`).
# Prints each problem with the file it is in and exits 1 if there is any. Needs only bash,
# git (or find), grep, sed, awk and sort; runs in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

docs=(ARCHITECTURE.md README.md)
for page in docs/*.md; do
    [[ -e $page ]] && docs+=("$page")
done
operations=docs/operations.md

roots='src|python|scripts|tests|benches|docs|examples|csrc|fuzz'
# Bare names that are not files of this tree, with why.
allowed_names=()
# Variables read by the S3 signer's credential chain (reqsign's providers), not by framecache's
# own code; operations.md lists them because they choose the credentials. `AWS_ENDPOINT_URL_STS`
# is named there as not read.
signer_reads=(
    AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME AWS_SHARED_CREDENTIALS_FILE
    AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
    AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE AWS_ENDPOINT_URL_STS
)
# Flags of other programs that operations.md shows (`aws sso login --profile lab`).
foreign_flags=(--profile)
# `name=` spans in operations.md that are no Python keyword: a log filter
# (`FRAMECACHE_LOG=framecache=info`) and a metric label (`tier="disk"`).
not_keywords=(framecache tier)

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

# Every file of the tree, and every end of each path (`a/b/c.rs`, `b/c.rs`, `c.rs`).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    tree=$(git ls-files --cached --others --exclude-standard)
else
    tree=$(find . -type f -not -path './target/*' -not -path './.git/*' | sed 's|^\./||')
fi
declare -A ends=()
while IFS= read -r file; do
    [[ -e $file ]] || continue # deleted in the work tree, not yet in the index
    rest=$file
    while :; do
        ends[$rest]=1
        [[ $rest == */* ]] || break
        rest=${rest#*/}
    done
done <<<"$tree"
for name in ${allowed_names[@]+"${allowed_names[@]}"}; do
    ends[$name]=1
done

# Every word (identifier) of the code, for the constants and Rust paths the docs name.
declare -A rust_words=() code_words=()
while IFS= read -r word; do rust_words[$word]=1; done < <(
    grep -rhoE --include='*.rs' '[A-Za-z_][A-Za-z0-9_]*' src python/src tests benches examples 2>/dev/null | sort -u)
while IFS= read -r word; do code_words[$word]=1; done < <(
    grep -rhoE --include='*.rs' --include='*.py' --include='*.pyi' --include='*.sh' --include='*.c' \
        '[A-Za-z_][A-Za-z0-9_]*' src python tests benches examples scripts csrc 2>/dev/null | sort -u)

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

    # Bare file names: a word ending in a source extension, not under a root (checked above)
    # and not a URL path (`/viewer.js`).
    while IFS= read -r word; do
        word=${word#[!A-Za-z0-9_.{]}
        [[ $word == /* || $word =~ ^($roots)/ || $word == *'<'* ]] && continue
        while IFS= read -r one; do
            one=${one#./}
            while [[ $one == ../* ]]; do one=${one#../}; done
            [[ $one == *'{'* ]] && continue # a placeholder such as `{n}.rs`
            [[ -n ${ends[$one]+x} ]] ||
                fail "$doc names \`$one\`, which is no file of the tree (rename it, give its path, or allow it in scripts/check-docs.sh)"
        done < <(expand "$word")
    done < <(grep -oE '(^|[^A-Za-z0-9_./{}-])[A-Za-z0-9_.{},/-]*[A-Za-z0-9_}]\.(rs|pyi?|sh|js|html|toml|md|c|h|css)([^A-Za-z0-9_]|$)' "$doc" |
        sed -E 's/[^A-Za-z0-9_}]$//' | sort -u)

    # Constants: a backticked `UPPER_CASE` name (not a variable) is a word of the code.
    while IFS= read -r constant; do
        [[ -n ${code_words[$constant]+x} ]] ||
            fail "$doc names \`$constant\`, which the code does not define or use"
    done < <(grep -oE '`[A-Z][A-Z0-9]*(_[A-Z0-9]+)+`' "$doc" | tr -d '`' | sort -u |
        grep -vE '^(FRAMECACHE|S3|AWS|SSL)_' || true)

    # Rust paths: each segment of a backticked `Type::item` (`Error::NoFrame`,
    # `CacheConfig::from_env`, `framecache::PerProcess`) is a word of the Rust code.
    while IFS= read -r item; do
        item=${item%'()'}
        IFS=: read -ra segments <<<"${item//::/:}"
        for segment in "${segments[@]}"; do
            [[ $segment == framecache || $segment == crate || $segment == std ]] && continue
            [[ -n ${rust_words[$segment]+x} ]] ||
                { fail "$doc names \`$item\`: the code has no \`$segment\`"; break; }
        done
    done < <(grep -oE '`[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)+(\(\))?`' "$doc" | tr -d '`' | sort -u)

    if grep -nEi '(issue|ticket|work item)[ -]*#?[0-9]' "$doc" >/dev/null; then
        while IFS= read -r hit; do
            fail "$doc:${hit%%:*} names a work item or ticket number"
        done < <(grep -nEi '(issue|ticket|work item)[ -]*#?[0-9]' "$doc")
    fi
    while IFS= read -r hit; do
        fail "$doc:${hit%%:*} names a path of one machine: ${hit#*:}"
    done < <(grep -noE '(^|[^A-Za-z0-9_.~-])/(home|work|Users|root)/[^ `)]*' "$doc" || true)
done

# Links between pages: `[..](page.md#anchor)` and `[..](#anchor)` name a heading of the page
# (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens).
anchors() {
    grep -E '^#{1,6} ' "$1" | sed -E 's/^#+ +//' | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'
}
for doc in "${docs[@]}"; do
    [[ -e $doc ]] || continue
    while IFS= read -r link; do
        target=${link%%#*} anchor=${link#*#}
        [[ $target == http* ]] && continue
        if [[ -z $target ]]; then
            page=$doc
        else
            page=$(dirname "$doc")/$target
            [[ -e $page ]] || { fail "$doc links to $target, which does not exist"; continue; }
        fi
        anchors "$page" | grep -qxF -- "$anchor" ||
            fail "$doc links to $link: $page has no heading with that anchor"
    done < <(grep -oE '\]\([^) ]*#[^) ]+\)' "$doc" | sed -E 's/^\]\(//; s/\)$//' | sort -u)
    while IFS= read -r target; do
        [[ -e $(dirname "$doc")/$target ]] || fail "$doc links to $target, which does not exist"
    done < <(grep -oE '\]\([^) #:]+\)' "$doc" | sed -E 's/^\]\(//; s/\)$//' | sort -u)
done

# --- Settings: the code and operations.md name the same ones. ---------------------------

# Source files of the product (not tests, benchmarks or fuzz targets) under src/ and python/.
product_sources() {
    grep -E '^(src|python)/.*\.(rs|py|pyi)$' <<<"$tree" |
        grep -vE '(^|/)(tests?|bench|benches|fuzz)(/|\.rs$)|(^|/)test_[^/]*\.py$|conftest\.py$' |
        while IFS= read -r f; do [[ -e $f ]] && echo "$f"; done
}
mapfile -t sources < <(product_sources)

if [[ ! -e $operations ]]; then
    fail "$operations is missing"
else
    # Environment variables.
    # Product code only: a Rust file's top-level `#[cfg(test)] mod …` and what follows it
    # (unit tests may set variables that are no setting) are left out.
    code_env=$(awk '
        FNR == 1 { intests = 0; held = 0 }
        intests { next }
        held { held = 0; if ($0 ~ /^(pub(\([a-z]+\))? )?mod /) { intests = 1; next } }
        /^#\[cfg\(test\)\]/ && FILENAME ~ /\.rs$/ { held = 1; next }
        { print }
    ' "${sources[@]}" | grep -ohE '"(FRAMECACHE|S3|AWS)_[A-Z0-9_]+"' | tr -d '"' | sort -u)
    script_env=$(grep -rohE '\$\{?(FRAMECACHE|S3|AWS)_[A-Z0-9_]+' scripts | sed -E 's/^\$\{?//' | sort -u)
    docs_env=$(grep -ohE '(FRAMECACHE|S3|AWS)_[A-Z0-9_]*[A-Z0-9]' "$operations" | sort -u)
    known_env=$(printf '%s\n' $code_env $script_env "${signer_reads[@]}" | sort -u)
    for name in $code_env; do
        grep -qxF "$name" <<<"$docs_env" ||
            fail "the code reads the environment variable $name; $operations does not name it"
    done
    for name in $docs_env; do
        grep -qxF "$name" <<<"$known_env" ||
            fail "$operations names the environment variable $name, which neither the code nor a script reads"
    done

    # Command-line flags: `#[arg(...)]` attributes naming `long`, and the field they are on.
    mapfile -t cli_sources < <(grep -lE '#\[(arg|clap)\(' "${sources[@]}" || true)
    code_flags=$(
        [[ ${#cli_sources[@]} -gt 0 ]] && awk '
            /#\[(arg|clap)\(/ {
                attr = $0
                if (attr ~ /[(, ]long *[,)]/) { pending = 1; given = "" }
                if (match(attr, /long *= *"[^"]+"/)) {
                    given = substr(attr, RSTART, RLENGTH); sub(/^long *= *"/, "", given); sub(/"$/, "", given)
                    pending = 1
                }
                next
            }
            pending && /^[ \t]*(pub(\([a-z]+\))? +)?[a-z_][a-z0-9_]* *:/ {
                field = $0; sub(/^[ \t]*(pub(\([a-z]+\))? +)?/, "", field); sub(/ *:.*/, "", field)
                gsub(/_/, "-", field)
                print "--" (given != "" ? given : field)
                pending = 0; given = ""
            }
        ' "${cli_sources[@]}"
        # clap's builder form, should flags be declared that way: `.long("lock-wait")`.
        grep -ohE '\.long\("[a-z][a-z0-9-]*"\)' "${sources[@]}" | sed -E 's/^\.long\("/--/; s/"\)$//'
        true
    ) && code_flags=$(sort -u <<<"$code_flags")
    docs_flags=$(grep -ohE '(^|[^A-Za-z0-9-])--[a-z][a-z0-9-]*' "$operations" | sed -E 's/^[^-]//' | sort -u)
    for flag in $code_flags; do
        grep -qxF -- "$flag" <<<"$docs_flags" ||
            fail "the command line has the flag $flag; $operations does not name it"
    done
    known_flags=$(printf '%s\n' $code_flags "${foreign_flags[@]}" --help --version | sort -u)
    for flag in $docs_flags; do
        grep -qxF -- "$flag" <<<"$known_flags" ||
            fail "$operations names the flag $flag, which the command line does not have"
    done

    # Python keywords: FrameCache.__init__ in the stubs; every keyword of the Python API.
    mapfile -t stubs < <(printf '%s\n' "${sources[@]}" | grep -E '^python/.*\.pyi$' || true)
    init_keywords=$(
        [[ ${#stubs[@]} -gt 0 ]] && awk '
            /^class FrameCache[(:]/ { inclass = 1; next }
            /^class / { inclass = 0 }
            inclass && /def __init__\(/ { ininit = 1; next }
            ininit && /\)( *->.*)?: *(\.\.\.)? *$/ { ininit = 0; next }
            ininit && /^[ \t]*[a-z_][a-z0-9_]* *:/ {
                k = $0; sub(/^[ \t]*/, "", k); sub(/ *:.*/, "", k); if (k != "self") print k
            }
        ' "${stubs[@]}" | sort -u
    )
    [[ -n $init_keywords ]] || fail "found no FrameCache.__init__ keywords in a .pyi under python/"
    # Any parameter of any def (one per line or several on one line) in the Python sources.
    mapfile -t py_sources < <(printf '%s\n' "${sources[@]}" | grep -E '^python/.*\.pyi?$' || true)
    api_keywords=$(
        [[ ${#py_sources[@]} -gt 0 ]] && awk '
            /^[ \t]*(async +)?def / { indef = 1 }
            indef {
                line = $0; sub(/^[ \t]*(async +)?def +[A-Za-z_0-9]+ *\(/, "", line)
                n = split(line, parts, ",")
                for (i = 1; i <= n; i++) {
                    p = parts[i]; sub(/^[ \t(*]*/, "", p)
                    if (match(p, /^[a-z_][a-z0-9_]* *[:=]/)) { sub(/ *[:=].*/, "", p); print p }
                }
                if ($0 ~ /\)( *->.*)?: *(\.\.\.)? *$/ || $0 ~ /\) *$/) indef = 0
            }
        ' "${py_sources[@]}" | sort -u
    )
    docs_keywords=$(grep -ohE '`[a-z_][a-z0-9_]*=' "$operations" | tr -d '`=' | sort -u |
        grep -vxF -f <(printf '%s\n' "${not_keywords[@]}") || true)
    for keyword in $init_keywords; do
        grep -qxF "$keyword" <<<"$docs_keywords" ||
            fail "FrameCache(...) takes the keyword $keyword=; $operations does not name it (as \`$keyword=\`)"
    done
    # The Python page lists them too (each in backticks).
    if [[ -e docs/python.md ]]; then
        for keyword in $init_keywords; do
            grep -qE "\`$keyword(=[^\`]*)?\`" docs/python.md ||
                fail "FrameCache(...) takes the keyword $keyword=; docs/python.md does not name it (as \`$keyword\`)"
        done
    fi
    for keyword in $docs_keywords; do
        grep -qxF "$keyword" <<<"$(printf '%s\n' $init_keywords $api_keywords)" ||
            fail "$operations names the Python keyword $keyword=, which no function of the package takes"
    done
fi

# CHANGELOG.md: one section per release, each heading at most once in it.
if [[ -e CHANGELOG.md ]]; then
    while IFS= read -r problem; do
        fail "CHANGELOG.md:$problem"
    done < <(awk '
        /^## / { section = $0; split("", seen); if (sections[section]++) print NR ": the section \"" section "\" appears twice"; next }
        /^### / {
            if ($0 !~ /^### (Added|Changed|Deprecated|Removed|Fixed|Security)$/)
                print NR ": \"" $0 "\" is none of Added, Changed, Deprecated, Removed, Fixed, Security"
            else if (seen[$0]++)
                print NR ": \"" $0 "\" appears twice in \"" section "\"; merge its entries into the first"
        }
    ' CHANGELOG.md)
fi

lines=$(wc -l <README.md)
if ((lines > 250)); then
    fail "README.md has $lines lines; keep it a front door of at most 250 (details go under docs/)"
fi

if ((failures > 0)); then
    echo "check-docs: $failures problem(s)" >&2
    exit 1
fi
echo "check-docs: ${#docs[@]} pages, paths and file names exist, $(wc -w <<<"$code_env") variables, $(wc -w <<<"$code_flags") flags and $(wc -w <<<"$init_keywords") keywords documented, README.md $lines lines"
