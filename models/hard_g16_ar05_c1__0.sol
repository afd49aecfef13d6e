# sprkit 0.1.0 certified optimum (branch and bound, gap <= 1e-9)
instance hard_g16_ar05_c1.npz
lam0 0.055067288606140456
lam2 0.0005
M 4.0
objective 1.9422587176469177
bound 1.942258716675784
kept 1 3 4 8 9
checked scip 1.9422587176469177
