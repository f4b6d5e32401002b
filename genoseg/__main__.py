from genoseg.cli import main

main()
