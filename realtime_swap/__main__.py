from realtime_swap.cli import main

raise SystemExit(main())
