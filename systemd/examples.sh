# Sourced by install.sh: install_example FILE DIR installs a shipped example (a reference table, a
# serial profile) into DIR without overwriting a local edit.
# DIR/.shipped/ keeps the copy last shipped. A file in DIR that is absent or equal to it was not
# edited here and gets the new version; one that differs was edited here (or predates .shipped/)
# and stays, and the new version goes beside it as NAME.dist, with a notice.
# OWNER and GROUP (optional) set who owns what is installed.
install_example() {
    _name=$(basename "$1")
    _target="$2/$_name"
    _shipped="$2/.shipped/$_name"
    install -d -m 0750 ${OWNER:+-o "$OWNER"} ${GROUP:+-g "$GROUP"} "$2/.shipped"
    if [ ! -e "$_target" ] || cmp -s "$_target" "$1" || { [ -f "$_shipped" ] && cmp -s "$_target" "$_shipped"; }; then
        install -m 0640 ${OWNER:+-o "$OWNER"} ${GROUP:+-g "$GROUP"} "$1" "$_target"
        rm -f "$_target.dist"
    else
        install -m 0640 ${OWNER:+-o "$OWNER"} ${GROUP:+-g "$GROUP"} "$1" "$_target.dist"
        echo "kept $_target (edited here); the version shipped now is $_target.dist"
    fi
    install -m 0640 ${OWNER:+-o "$OWNER"} ${GROUP:+-g "$GROUP"} "$1" "$_shipped"
}
