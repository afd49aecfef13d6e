# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance synth_g8_r1.npz
lam0 0.3
lam2 0.05
M 2.0
objective 1.1918305054887828
bound 1.1918305054887823
kept 2 7
checked scip 1.191831054769613
