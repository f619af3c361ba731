
_qemu_init_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _QEMU_INIT_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _qemu_init_completion qemu-init

