# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance synth_g10_r2_nobias.npz
lam0 0.1
lam2 0.1
M 2.0
objective 1.2133692904648423
bound 1.213369290464839
kept 0 2 7
checked scip 1.2133694744391201
