from rigctl.cli import main

main()
