# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance digits_h8.npz
lam0 5.0
lam2 1.0
M 20.0
objective 93.605831584322
bound 93.60583158431557
kept 0 2 3 5 6 7
checked scip 93.60583177079774
