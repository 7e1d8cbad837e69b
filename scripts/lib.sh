# scripts/lib.sh — shell functions shared by run.sh, test.sh and api-fuzz.sh (sourced,
# not run).

# run_child CMD...: runs CMD as a child that is waited for interruptibly, so a signal to
# the calling script is handled at once instead of after CMD ends. The child gets the
# default INT/QUIT/TERM handling back, so Ctrl-C still reaches it directly. Its pid is
# in CHILD while it runs.
run_child() {
    (
        trap - INT QUIT TERM
        exec "$@"
    ) &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# How the services find each other. Both functions read the associative array PORT_OF
# (service name -> port, for the five subgraphs) and STACK_HOST (default 127.0.0.1).

# stack_url NAME: the base URL of service NAME.
stack_url() { printf 'http://%s:%s' "${STACK_HOST:-127.0.0.1}" "${PORT_OF[$1]}"; }

# stack_links NAME: the VAR=VALUE settings that point subgraph NAME at the others (one
# per line): the users directory, the budgets subgraph, and its event consumers.
stack_links() {
    printf 'USERS_URL=%s/graphql\n' "$(stack_url users)"
    printf 'BUDGETS_URL=%s/graphql\n' "$(stack_url budgets)"
    case "$1" in
    expenses) printf 'EVENT_CONSUMERS=budgets=%s,analytics=%s\n' "$(stack_url budgets)" "$(stack_url analytics)" ;;
    budgets | analytics) printf 'EVENT_CONSUMERS=notifications=%s\n' "$(stack_url notifications)" ;;
    esac
}

# stack_router_config: the router's TOML settings sending each subgraph to its port.
stack_router_config() {
    local name
    for name in users expenses budgets analytics notifications; do
        printf '[subgraphs.%s]\nurl = "%s/graphql"\n' "$name" "$(stack_url "$name")"
    done
}
