"""The `clipbench` commands, one module each: ``add_parser(sub)`` declares its arguments, ``main(args,
console)`` runs it (the work itself lives in the modules that own it: runner, tuning, leaderboard, ...)."""

COMMANDS = {  # command name -> module
    "run": "run", "tune": "tune", "list": "listing", "show": "listing", "difficulty": "difficulty",
    "data": "data", "leaderboard": "leaderboard", "report": "report", "export": "export", "bench": "bench",
    "pretrain": "pretrain",
}
