"""What the ledger says beyond its sums: the dashboard's figures (:mod:`.overview`), spend
forecasts (:mod:`.forecast`), what-if repricing (:mod:`.whatif`) and savings advice (:mod:`.advise`)."""
