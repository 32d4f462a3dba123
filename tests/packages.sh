# Sourced by the test scripts: installs Debian packages that a script needs and lacks.
#
#   install_packages NAME...   # apt-get install, as root; otherwise says what is missing
#
# Does nothing when given no names.

install_packages() {
    (($#)) || return 0
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing $*"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
            >/dev/null
    else
        echo "missing tools: $* (install them, or run as root with apt-get)" >&2
        exit 1
    fi
}
