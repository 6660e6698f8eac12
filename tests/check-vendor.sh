#!/usr/bin/env bash
# Checks that each vendored crate (vendor/NAME, used through [patch.crates-io]) is exactly its
# crates.io release plus the local patch in vendor/NAME.patch: downloads the pinned .crate into
# target/vendor-check/ (kept across runs, reused while its sha256 matches), verifies its sha256,
# extracts it, deletes the files the patch's header lists as "Delete:", applies the patch with
# `git apply`, and compares the result with vendor/NAME (diff -r, plus the executable bits).
#
#   bash tests/check-vendor.sh                 check every vendored crate (exit 1 on a difference)
#   bash tests/check-vendor.sh --regenerate    rewrite every vendor/NAME.patch from vendor/NAME
#   bash tests/check-vendor.sh --reapply NAME  replace vendor/NAME by the pinned release with
#                                              vendor/NAME.patch applied (`git apply --reject`:
#                                              hunks that do not apply are left in *.rej files)
#
# Upgrading a crate: set its new version and sha256 (crates.io's index, field "cksum") in CRATES
# below, run --reapply NAME, fix and delete the *.rej files, run --regenerate, then this check,
# then build and test. Needs bash, coreutils, tar, diff, git, and curl or python3.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
root=$PWD

# name, version, sha256 of the .crate as crates.io serves it.
CRATES=(
  "glommio 0.9.0 e1f8bc1fce949d18098dc0a4e861314e40351a0144ebf61e59bdb5254a2273b2"
  "kafka-protocol 0.18.0 099d5c2f1b40cd830cbf18ca4d2a0805f2875b811ca18f0372b2433e68fe2dda"
)
cache=$root/target/vendor-check

die() {
  echo "check-vendor: $*" >&2
  exit 1
}

usage() {
  echo "usage: bash tests/check-vendor.sh [--regenerate | --reapply NAME]" >&2
  exit 2
}

mode=check
only=
case "${1:-}" in
  "") ;;
  --regenerate) mode=regenerate ;;
  --reapply)
    mode=reapply
    only=${2:-}
    [[ -n $only ]] || usage
    ;;
  *) usage ;;
esac

export LC_ALL=C TZ=UTC
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-vendor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

sha256_of() {
  sha256sum "$1" | cut -d' ' -f1
}

download() { # url dest
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"
  else
    python3 - "$1" "$2" <<'PY'
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as response, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(response, out)
PY
  fi
}

# Puts NAME-VERSION.crate in the cache with the pinned sha256 and prints its path: the cached
# copy if it matches, else cargo's own download cache, else crates.io.
fetch_crate() { # name version sha256
  local name=$1 version=$2 sha=$3
  local file=$cache/$name-$version.crate
  mkdir -p "$cache"
  if [[ -f $file ]]; then
    if [[ $(sha256_of "$file") == "$sha" ]]; then
      echo "$file"
      return
    fi
    echo "check-vendor: cached $file does not match its pinned sha256; fetching it again" >&2
    rm -f "$file"
  fi
  local candidate
  for candidate in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate"; do
    if [[ -f $candidate && $(sha256_of "$candidate") == "$sha" ]]; then
      cp "$candidate" "$file.part"
      mv "$file.part" "$file"
      echo "$file"
      return
    fi
  done
  local url=https://static.crates.io/crates/$name/$name-$version.crate
  echo "check-vendor: downloading $url" >&2
  download "$url" "$file.part" || die "could not download $url"
  local got
  got=$(sha256_of "$file.part")
  if [[ $got != "$sha" ]]; then
    rm -f "$file.part"
    die "$name-$version.crate has sha256 $got, expected $sha (pinned in $0)"
  fi
  mv "$file.part" "$file"
  echo "$file"
}

# Extracts the release into DIR (fresh mtimes, so that no file looks like diff -N's epoch).
extract() { # crate-file name version dir
  mkdir -p "$tmp/extract"
  tar -xzf "$1" -C "$tmp/extract" -m --no-same-owner
  mv "$tmp/extract/$2-$3" "$4"
  rmdir "$tmp/extract"
}

# The paths a patch's header lists as "Delete: PATH", one a line.
deleted_files() { # patch
  local line
  while IFS= read -r line; do
    [[ $line == "diff -"* || $line == "--- "* ]] && break
    [[ $line == "Delete: "* ]] && echo "${line#Delete: }"
  done <"$1"
  return 0
}

# Applies a crate's patch to the release extracted in DIR: the header's deletions, then the diff.
apply_patch() { # patch dir [git-apply options]
  local patch=$1 dir=$2 path
  shift 2
  while IFS= read -r path; do
    [[ $path != /* && /$path/ != */../* ]] || die "$patch: refusing to delete $path"
    rm -f "${dir:?}/$path"
  done < <(deleted_files "$patch")
  find "$dir" -mindepth 1 -depth -type d -empty -delete
  # GIT_CEILING_DIRECTORIES keeps git from taking a repository above $tmp for the tree's own.
  (cd "$dir" && GIT_CEILING_DIRECTORIES=$tmp git apply -p1 --whitespace=nowarn "$@" "$patch")
}

exec_bits() { # dir
  (cd "$1" && find . -type f -perm -u+x | sort)
}

# Writes vendor/NAME.patch: a header naming the release and the files vendor/NAME no longer
# has, then `diff -ruN` of the rest of the release against vendor/NAME, without timestamps.
regenerate() { # name version sha256 crate-file
  local name=$1 version=$2 sha=$3 crate=$4
  local work=$tmp/$name patch=$root/vendor/$name.patch
  [[ -z $(find "vendor/$name" -name '*.rej' -print -quit) ]] \
    || die "vendor/$name has *.rej files: fix the rejected hunks and delete them first"
  mkdir -p "$work"
  extract "$crate" "$name" "$version" "$work/a"
  cp -R "vendor/$name" "$work/b"
  local deleted=()
  local path
  while IFS= read -r -d '' path; do
    path=${path#./}
    if [[ ! -e $work/b/$path ]]; then
      deleted+=("$path")
      rm -f "$work/a/$path"
    fi
  done < <(cd "$work/a" && find . -type f -print0 | sort -z)
  find "$work/a" -mindepth 1 -depth -type d -empty -delete
  if [[ $(exec_bits "$work/a") != "$(exec_bits "$work/b")" ]]; then
    diff <(exec_bits "$work/a") <(exec_bits "$work/b") >&2 || true
    die "vendor/$name changes executable bits, which a diff -ruN patch cannot carry"
  fi
  {
    echo "shardlog's patch to $name $version from crates.io:"
    echo "$name-$version.crate sha256 $sha"
    if [[ ${#deleted[@]} -eq 0 ]]; then
      echo "vendor/$name is that release with the diff below applied from the crate root"
      echo "(git apply, or patch -p1)."
    else
      echo "vendor/$name is that release with the files listed as \"Delete:\" removed and the"
      echo "diff below applied from the crate root (git apply, or patch -p1)."
    fi
    echo "Written by \`bash tests/check-vendor.sh --regenerate\`, checked by tests/check-vendor.sh;"
    echo "vendor/$name/PATCHED.md says what the patch changes and why."
    echo
    for path in "${deleted[@]}"; do
      echo "Delete: $path"
    done
    [[ ${#deleted[@]} -eq 0 ]] || echo
    local status=0
    (cd "$work" && diff -ruN a b) >"$work/diff" || status=$?
    [[ $status -le 1 ]] || die "diff failed on $name"
    # Drop the timestamps from the file headers; a side that does not exist becomes /dev/null.
    awk '
      /^diff -ruN / { header = 2; print; next }
      header > 0 && /^(---|\+\+\+) / {
        header--
        tab = index($0, "\t")
        if (tab == 0) { print; next }
        name = substr($0, 1, tab - 1)
        if (substr($0, tab + 1) ~ /^1970-01-01 00:00:00(\.0+)? \+0000$/)
          name = substr(name, 1, 4) "/dev/null"
        print name
        next
      }
      { header = 0; print }
    ' "$work/diff"
  } >"$work/patch"
  mv "$work/patch" "$patch"
  echo "check-vendor: wrote vendor/$name.patch ($(wc -l <"$patch") lines," \
    "${#deleted[@]} files deleted)"
}

check() { # name version sha256 crate-file
  local name=$1 version=$2 sha=$3 crate=$4
  local work=$tmp/$name patch=$root/vendor/$name.patch
  [[ -f $patch ]] || die "vendor/$name.patch is missing (bash tests/check-vendor.sh --regenerate)"
  grep -qxF "$name-$version.crate sha256 $sha" "$patch" \
    || die "vendor/$name.patch was not written for $name $version (sha256 $sha): after an" \
      "upgrade, run --reapply $name, then --regenerate"
  mkdir -p "$work"
  extract "$crate" "$name" "$version" "$work/patched"
  apply_patch "$patch" "$work/patched" \
    || die "vendor/$name.patch does not apply to $name $version (git apply's errors above)"
  local status=0
  diff -r "$work/patched" "vendor/$name" >"$work/diff" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    head -n 100 "$work/diff" >&2
    echo "check-vendor: FAILED: vendor/$name is not $name $version + vendor/$name.patch" \
      "(diff -r above: $(wc -l <"$work/diff") lines, at most 100 shown). If vendor/$name" \
      "is right, run \`bash tests/check-vendor.sh --regenerate\` and commit the patch." >&2
    failed=1
    return
  fi
  if [[ $(exec_bits "$work/patched") != "$(exec_bits "vendor/$name")" ]]; then
    diff <(exec_bits "$work/patched") <(exec_bits "vendor/$name") >&2 || true
    echo "check-vendor: FAILED: executable bits differ between $name $version + patch (<)" \
      "and vendor/$name (>)" >&2
    failed=1
    return
  fi
  echo "check-vendor: ok: vendor/$name == $name $version (sha256 $sha) + vendor/$name.patch" \
    "($(wc -l <"$patch") lines)"
}

reapply() { # name version sha256 crate-file
  local name=$1 version=$2 crate=$4
  local work=$tmp/$name patch=$root/vendor/$name.patch
  [[ -f $patch ]] || die "vendor/$name.patch is missing"
  mkdir -p "$work"
  extract "$crate" "$name" "$version" "$work/patched"
  local status=0
  apply_patch "$patch" "$work/patched" --reject || status=$?
  rm -rf "vendor/$name"
  cp -R "$work/patched" "vendor/$name"
  if [[ $status -ne 0 ]]; then
    echo "check-vendor: vendor/$name is now $name $version with the hunks of vendor/$name.patch" \
      "that applied; fix the rejected ones by hand:" >&2
    (cd "vendor/$name" && find . -name '*.rej' | sort) >&2
    echo "then delete the *.rej files and run \`bash tests/check-vendor.sh --regenerate\`." >&2
    failed=1
    return
  fi
  echo "check-vendor: vendor/$name is now $name $version + vendor/$name.patch; run" \
    "\`bash tests/check-vendor.sh --regenerate\` to rewrite the patch's context"
}

failed=0
found=
for entry in "${CRATES[@]}"; do
  read -r name version sha <<<"$entry"
  [[ -z $only || $only == "$name" ]] || continue
  found=1
  [[ -d vendor/$name ]] || die "vendor/$name is missing"
  crate=$(fetch_crate "$name" "$version" "$sha")
  case $mode in # each sets failed=1 on a difference
    check) check "$name" "$version" "$sha" "$crate" ;;
    regenerate) regenerate "$name" "$version" "$sha" "$crate" ;;
    reapply) reapply "$name" "$version" "$sha" "$crate" ;;
  esac
done
[[ -n $found ]] || die "no vendored crate named $only (CRATES in $0)"
exit "$failed"
