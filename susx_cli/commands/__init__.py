"""One module per subcommand: parse options, call the stage function, render the result."""
