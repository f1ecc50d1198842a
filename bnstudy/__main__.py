from bnstudy.cli import main

main()
