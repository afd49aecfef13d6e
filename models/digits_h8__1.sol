# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance digits_h8.npz
lam0 1.0
lam2 0.5
M 20.0
objective 40.377213138752936
bound 40.377213138750655
kept 0 2 3 5 6 7
checked scip 40.37721335700424
