from guard.evaluation.cli import main

main()
