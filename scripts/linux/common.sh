# shellcheck shell=bash
# Shared by scripts/linux/*: fetch Debian packages into a build tree with apt.
# Sourced, not run. Nothing here installs anything on the host: packages are
# downloaded (`apt-get download`) and unpacked (`dpkg -x`) under the build dir.

die() { echo "${0##*/}: $*" >&2; exit 1; }

_apt_updated=0
# apt_refresh: `apt-get update` once per run, as root or through sudo (non-interactive).
apt_refresh() {
    [ "$_apt_updated" -eq 0 ] || return 0
    _apt_updated=1
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null || return 1
        sudo="sudo -n"
    fi
    echo "${0##*/}: apt-get update" >&2
    $sudo apt-get update -qq >&2
}

# apt_known PKG: does apt have a download candidate for PKG?
apt_known() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# apt_resolve PKG: make sure apt knows PKG (running `apt-get update` once if not).
apt_resolve() {
    apt_known "$1" && return 0
    apt_refresh || true
    apt_known "$1" || die "apt knows no package '$1' (is a Debian bookworm source in /etc/apt/sources.list(.d)? network?)"
}

# fetch_deb PKG DIR: print the path of DIR/PKG_*.deb, downloading it first if
# no such file is there (the cache: a .deb already in DIR is never fetched again).
fetch_deb() {
    local pkg=$1 dir=$2 have tmp
    mkdir -p "$dir"
    have=$(ls -1 "$dir"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
    if [ -n "$have" ]; then
        echo "$have"
        return 0
    fi
    apt_resolve "$pkg"
    tmp=$(mktemp -d "$dir/.download.XXXXXX")
    # apt-get download writes into the current directory; as root it warns that
    # the download is unsandboxed when _apt cannot write there: make it writable.
    chmod 0777 "$tmp"
    echo "${0##*/}: downloading $pkg" >&2
    if ! (cd "$tmp" && apt-get download -q "$pkg" >&2 2>"$tmp/.err"); then
        cat "$tmp/.err" >&2
        rm -rf "$tmp"
        die "apt-get download $pkg failed (network? apt sources? try 'apt-get update')"
    fi
    have=$(ls -1 "$tmp"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$have" ] || { rm -rf "$tmp"; die "apt-get download $pkg produced no .deb"; }
    mv "$have" "$dir/"
    rm -rf "$tmp"
    ls -1 "$dir"/"${pkg}"_*.deb | sort -V | tail -n1
}

# unpack_deb DEB DEST: dpkg -x DEB into DEST once (a stamp records which .deb is there).
unpack_deb() {
    local deb=$1 dest=$2
    if [ -f "$dest/.unpacked" ] && [ "$(cat "$dest/.unpacked")" = "${deb##*/}" ]; then
        return 0
    fi
    rm -rf "$dest"
    mkdir -p "$dest.tmp"
    dpkg -x "$deb" "$dest.tmp" || { rm -rf "$dest.tmp"; die "dpkg -x $deb failed"; }
    echo "${deb##*/}" >"$dest.tmp/.unpacked"
    mv "$dest.tmp" "$dest"
}
