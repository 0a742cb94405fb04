"""`rigctl verify`: the shipped testinfra suites, run over SSH against rigs."""
