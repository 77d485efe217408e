from pypoints.cli import main

main()
