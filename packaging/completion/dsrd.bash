# bash completion for dsrd                                  -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/dsrd, loaded by
# bash-completion the first time `dsrd <TAB>` is pressed. The candidates come
# from dsrd itself (urfave/cli's --generate-bash-completion), so they always
# match the installed binary; file names are completed where dsrd offers
# nothing (config check FILE, --config FILE).

_dsrd() {
	local cur prev words cword
	if declare -F _init_completion >/dev/null 2>&1; then
		_init_completion -n "=:" || return
	else
		# Without bash-completion's helpers: the plain word list.
		COMPREPLY=()
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
		cur="${COMP_WORDS[COMP_CWORD]}"
		prev="${COMP_WORDS[COMP_CWORD - 1]:-}"
	fi

	# A flag that takes a file name.
	case "$prev" in
	--config | -c)
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0
		;;
	esac

	# Ask dsrd for the subcommands (or, after a '-', the flags) of the
	# command line typed so far, without the word being completed.
	local -a request=("${words[@]:0:cword}")
	if [[ "$cur" == -* ]]; then
		request+=("$cur")
	fi
	local opts
	opts="$("${request[0]}" "${request[@]:1}" --generate-bash-completion 2>/dev/null)"
	if [[ -n "$opts" ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
	fi
	if [[ ${#COMPREPLY[@]} -eq 0 && "$cur" != -* ]]; then
		# Nothing to offer (config check FILE...): complete file names.
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
	return 0
}
complete -F _dsrd dsrd
