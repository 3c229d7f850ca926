from rsafe.cli import main

main()
