# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance synth_g8_r3.npz
lam0 0.5
lam2 0.0
M 3.0
objective 1.387786870884716
bound 1.3877868698847138
kept 3 6
checked scip 1.387786958609589
