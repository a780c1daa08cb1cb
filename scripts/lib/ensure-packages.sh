# shellcheck shell=bash
# ensure_packages TAG PACKAGE...: installs, without recommends, those of the Debian packages that
# are not installed yet, saying which under TAG. Sourced by the scripts that install what they use.
ensure_packages() {
  local tag=$1 missing=() package
  shift
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "$tag: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
